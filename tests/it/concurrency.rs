//! Many threads on one structure at once: appends with reads and syncs, striped in-place
//! updates, racing inserts of the same keys. Every value written is self-describing, so a
//! reader can tell a wrong or torn value from a right one.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use accretion::{AppendOnly, Content, ContentId, Dir, OnceMap, RandomAccess, Span};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};

use crate::common::Seeded;

const THREADS: usize = 8;

/// One RNG seed per thread, drawn from the test's seeded RNG.
fn thread_seeds(s: &mut Seeded, n: usize) -> Vec<u64> {
    (0..n).map(|_| s.rng.random()).collect()
}

/// The bytes of record `n` of thread `t`: a 5-byte head naming both, then a pattern that
/// depends on both and on the position.
fn record(t: usize, n: u32, len: usize) -> Vec<u8> {
    let head = [
        t as u8,
        n as u8,
        (n >> 8) as u8,
        (n >> 16) as u8,
        (n >> 24) as u8,
    ];
    (0..len)
        .map(|i| {
            if i < head.len() {
                head[i]
            } else {
                (t * 31 + n as usize * 7 + i * 13) as u8
            }
        })
        .collect()
}

/// Who appended each span: `(span, thread, counter)`.
type Appended = Mutex<Vec<(Span, usize, u32)>>;

fn check_disjoint(spans: &mut [(Span, usize, u32)]) {
    spans.sort_by_key(|(sp, _, _)| (sp.offset(), sp.len()));
    for w in spans.windows(2) {
        assert!(
            w[0].0.end() <= w[1].0.offset(),
            "records overlap: {:?} and {:?}",
            w[0],
            w[1]
        );
    }
}

#[test]
fn append_only_parallel_appends_and_reads() {
    let mut s = Seeded::new("append_only_parallel_appends_and_reads");
    let dir = Dir::temporary().unwrap();
    let log = AppendOnly::open(&dir, "log").unwrap();
    // Taken before any growth; held across all of it.
    let early_bytes = record(200, 0, 1000);
    let early = log.append(&early_bytes).unwrap();
    let early_slice: &[u8] = log.get(early).unwrap();
    let early_ptr = early_slice.as_ptr();
    let spans: Appended = Mutex::new(vec![(early, 200, 0)]);
    let seeds = thread_seeds(&mut s, THREADS);
    thread::scope(|scope| {
        for (t, seed) in seeds.into_iter().enumerate() {
            let (log, spans) = (&log, &spans);
            scope.spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed);
                // Slices held while the buffer grows under them.
                let mut held: Vec<(&[u8], Vec<u8>)> = Vec::new();
                for n in 0..600u32 {
                    // Zero-length records have a test of their own (below): racing with
                    // other appends they can hang.
                    let len = if n % 300 == 17 {
                        rng.random_range(70_000..140_000)
                    } else {
                        rng.random_range(1..500)
                    };
                    let bytes = record(t, n, len);
                    let span = if rng.random_bool(0.3) {
                        let align = 1usize << rng.random_range(0..=6);
                        let span = log.append_aligned(&bytes, align).unwrap();
                        assert_eq!(span.offset() % align as u64, 0);
                        span
                    } else {
                        log.append(&bytes).unwrap()
                    };
                    assert_eq!(span.len(), len as u64);
                    assert!(log.len() >= span.end(), "a returned record is published");
                    let slice = log.get(span).unwrap();
                    assert_eq!(slice, &bytes[..]);
                    if n % 8 == 0 {
                        held.push((slice, bytes));
                    }
                    spans.lock().unwrap().push((span, t, n));
                    for _ in 0..2 {
                        let (sp, pt, pn) = {
                            let all = spans.lock().unwrap();
                            all[rng.random_range(0..all.len())]
                        };
                        let want = record(pt, pn, sp.len() as usize);
                        assert_eq!(log.get(sp).unwrap(), &want[..], "record {pt}/{pn}");
                    }
                }
                for (slice, bytes) in &held {
                    assert_eq!(*slice, &bytes[..], "a held slice never changes");
                }
            });
        }
    });
    let mut spans = spans.into_inner().unwrap();
    assert_eq!(spans.len(), THREADS * 600 + 1);
    let max_end = spans.iter().map(|(sp, _, _)| sp.end()).max().unwrap();
    assert_eq!(log.len(), max_end, "len ends at the last record");
    assert!(
        log.len() > 2 << 20,
        "grew across several lanes: {}",
        log.len()
    );
    assert_eq!(
        early_slice,
        &early_bytes[..],
        "the early slice survived growth"
    );
    assert_eq!(
        log.get(early).unwrap().as_ptr(),
        early_ptr,
        "bytes never move"
    );
    check_disjoint(&mut spans);
    for (sp, t, n) in &spans {
        assert_eq!(
            log.get(*sp).unwrap(),
            &record(*t, *n, sp.len() as usize)[..]
        );
    }
    log.sync().unwrap();
    drop(log);
    let log = AppendOnly::open(&dir, "log").unwrap();
    assert_eq!(log.len(), max_end);
    for (sp, t, n) in &spans {
        assert_eq!(
            log.get(*sp).unwrap(),
            &record(*t, *n, sp.len() as usize)[..]
        );
    }
}

const ZERO_RACE_APPENDS: u32 = 4_000;

/// Zero-length appends racing with other appends. Run on detached threads watched for
/// progress, so that a hang fails the test instead of stalling the run: the test fails
/// only once no append has returned for [`STUCK_AFTER`] (an absolute deadline of 5 s
/// failed it on a loaded machine, where the appends took 16 s but kept going).
#[test]
fn append_only_zero_length_appends_race() {
    const STUCK_AFTER: Duration = Duration::from_secs(30);
    let dir = Dir::temporary().unwrap();
    let log = Arc::new(AppendOnly::open(&dir, "log").unwrap());
    let done = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    for t in 0..THREADS {
        let (log, tx, done) = (Arc::clone(&log), tx.clone(), Arc::clone(&done));
        thread::spawn(move || {
            let spans: Vec<(Span, usize, u32)> = (0..ZERO_RACE_APPENDS)
                .map(|n| {
                    let len = if n % 2 == 0 {
                        0
                    } else {
                        1 + (n as usize * 37 + t * 101) % 2048
                    };
                    let span = log.append(&record(t, n, len)).unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                    (span, t, n)
                })
                .collect();
            tx.send(spans).unwrap();
        });
    }
    drop(tx);
    let mut spans = Vec::new();
    let mut finished = 0;
    let (mut seen, mut since) = (0, Instant::now());
    while finished < THREADS {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(mine) => {
                spans.extend(mine);
                finished += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = done.load(Ordering::Relaxed);
                if now != seen {
                    (seen, since) = (now, Instant::now());
                } else if since.elapsed() > STUCK_AFTER {
                    panic!(
                        "no append returned for {STUCK_AFTER:?} ({now} done); len {}: an append is stuck",
                        log.len()
                    );
                }
            }
            Err(e) => panic!("an appending thread died ({e:?})"),
        }
    }
    assert_eq!(spans.len(), THREADS * ZERO_RACE_APPENDS as usize);
    check_disjoint(&mut spans);
    for (sp, t, n) in &spans {
        assert_eq!(
            log.get(*sp).unwrap(),
            &record(*t, *n, sp.len() as usize)[..]
        );
    }
    let max_end = spans.iter().map(|(sp, _, _)| sp.end()).max().unwrap();
    assert_eq!(log.len(), max_end);
}

#[test]
fn append_only_sync_while_appending() {
    let mut s = Seeded::new("append_only_sync_while_appending");
    let dir = Dir::temporary().unwrap();
    let log = AppendOnly::open(&dir, "log").unwrap();
    let spans: Appended = Mutex::new(Vec::new());
    let finished = AtomicUsize::new(0);
    let appenders = THREADS - 1;
    let seeds = thread_seeds(&mut s, appenders);
    let syncs = thread::scope(|scope| {
        let syncer = scope.spawn(|| {
            let mut syncs = 0;
            loop {
                let last = finished.load(Ordering::Acquire) == appenders;
                // Every record whose append returned before this sync starts.
                let covered = spans
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(sp, _, _)| sp.end())
                    .max()
                    .unwrap_or(0);
                let before = log.durable_len();
                log.sync().unwrap();
                syncs += 1;
                let durable = log.durable_len();
                let len = log.len();
                assert!(durable >= before, "durable length never shrinks");
                assert!(
                    durable >= covered,
                    "sync covers {covered}, durable {durable}"
                );
                assert!(durable <= len, "durable {durable} > len {len}");
                if last {
                    return syncs;
                }
            }
        });
        for (t, seed) in seeds.into_iter().enumerate() {
            let (log, spans, finished) = (&log, &spans, &finished);
            scope.spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed);
                for n in 0..400u32 {
                    let len = rng.random_range(1..300);
                    let span = log.append(&record(t, n, len)).unwrap();
                    spans.lock().unwrap().push((span, t, n));
                    let durable = log.durable_len();
                    let len = log.len();
                    assert!(durable <= len, "durable {durable} > len {len}");
                }
                finished.fetch_add(1, Ordering::Release);
            });
        }
        syncer.join().unwrap()
    });
    assert!(syncs >= 1);
    let mut spans = spans.into_inner().unwrap();
    assert_eq!(
        log.durable_len(),
        log.len(),
        "the last sync came after every append"
    );
    let len = log.len();
    drop(log);
    let log = AppendOnly::open(&dir, "log").unwrap();
    assert_eq!(log.len(), len);
    check_disjoint(&mut spans);
    for (sp, t, n) in &spans {
        assert_eq!(
            log.get(*sp).unwrap(),
            &record(*t, *n, sp.len() as usize)[..]
        );
    }
}

/// Indices every thread increments: in lane 0, at lane boundaries, and in later lanes.
const HOT: [u64; 6] = [0, 1, 2, 4095, 4096, 70_000];
const HOT_ROUNDS: u64 = 1_500;

/// The disjoint index thread `t` writes `j`-th, and the value it writes there.
fn disjoint(t: usize, j: u64) -> (u64, u64) {
    let index = 100_000 + (t as u64 + THREADS as u64 * j) * 1_009;
    (index, index * 3 + 1)
}

#[test]
fn random_access_parallel_updates() {
    let mut s = Seeded::new("random_access_parallel_updates");
    let dir = Dir::temporary().unwrap();
    let arr = RandomAccess::<u64>::open(&dir, "arr").unwrap();
    let seeds = thread_seeds(&mut s, THREADS);
    let writes_per_thread = 250;
    thread::scope(|scope| {
        for (t, seed) in seeds.into_iter().enumerate() {
            let arr = &arr;
            scope.spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed);
                let mut seen = [0u64; HOT.len()];
                let mut written = 0;
                for round in 0..HOT_ROUNDS {
                    for (h, &index) in HOT.iter().enumerate() {
                        let old = arr
                            .with_mut(index, |v| std::mem::replace(v, *v + 1))
                            .unwrap();
                        assert!(old >= seen[h], "counter {index} went back");
                        seen[h] = old + 1;
                    }
                    if round % 6 == 0 && written < writes_per_thread {
                        let (index, value) = disjoint(t, written);
                        arr.set(index, value).unwrap();
                        written += 1;
                    }
                    // Concurrent reads: hot counters only grow; disjoint cells hold zero
                    // or exactly their value, never a torn one.
                    let h = rng.random_range(0..HOT.len());
                    let got = arr.get(HOT[h]).unwrap().map(|r| *r).unwrap_or(0);
                    assert!(
                        got >= seen[h],
                        "counter {} read {got} < {}",
                        HOT[h],
                        seen[h]
                    );
                    assert!(got <= THREADS as u64 * HOT_ROUNDS);
                    seen[h] = got;
                    let (index, value) = disjoint(
                        rng.random_range(0..THREADS),
                        rng.random_range(0..writes_per_thread),
                    );
                    let got = arr.read(index).unwrap();
                    assert!(got == 0 || got == value, "cell {index} holds {got}");
                    if let Some(r) = arr.get(index).unwrap() {
                        assert_eq!(*r, value);
                    }
                }
                assert_eq!(written, writes_per_thread);
            });
        }
    });
    let check = |arr: &RandomAccess<u64>| {
        for &index in &HOT {
            assert_eq!(
                arr.read(index).unwrap(),
                THREADS as u64 * HOT_ROUNDS,
                "every increment of {index} counted"
            );
        }
        let mut max = 0;
        for t in 0..THREADS {
            for j in 0..writes_per_thread {
                let (index, value) = disjoint(t, j);
                assert_eq!(arr.get(index).unwrap().map(|r| *r), Some(value));
                max = max.max(index);
            }
        }
        assert_eq!(arr.len(), max + 1);
    };
    check(&arr);
    arr.sync().unwrap();
    drop(arr);
    let arr = RandomAccess::<u64>::open(&dir, "arr").unwrap();
    check(&arr);
}

/// The value thread `t` offers for `key`: names the writer and the key, so any reader can
/// check it, with a length that varies by both.
fn offer(t: usize, key: &[u8]) -> Vec<u8> {
    let len = 1 + (key.len() * 7 + t * 3) % 60;
    let mut v = vec![t as u8];
    v.extend((1..len).map(|i| key[i % key.len()].wrapping_add((t * i) as u8)));
    v
}

fn check_offer(key: &[u8], value: &[u8]) -> usize {
    assert!(!value.is_empty(), "empty value for {key:?}");
    let t = value[0] as usize;
    assert!(t < THREADS, "value for {key:?} names no writer");
    assert_eq!(value, &offer(t, key)[..], "value for {key:?} is not {t}'s");
    t
}

#[test]
fn once_map_parallel_overlapping_inserts() {
    let mut s = Seeded::new("once_map_parallel_overlapping_inserts");
    let dir = Dir::temporary().unwrap();
    let map = OnceMap::open(&dir, "map").unwrap();
    let keys: Vec<Vec<u8>> = (0..5_000u32)
        .map(|k| format!("key-{k}").into_bytes())
        .collect();
    let seeds = thread_seeds(&mut s, THREADS);
    // Per thread: (key index, inserted, value) for every insert, and reads of keys.
    type Seen = (Vec<(usize, bool, Vec<u8>)>, Vec<(usize, usize)>);
    let results: Vec<Seen> = thread::scope(|scope| {
        let handles: Vec<_> = seeds
            .into_iter()
            .enumerate()
            .map(|(t, seed)| {
                let (map, keys) = (&map, &keys);
                scope.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed);
                    // Each thread takes a random 60% of the keys, in its own order.
                    let mut mine: Vec<usize> =
                        (0..keys.len()).filter(|_| rng.random_bool(0.6)).collect();
                    mine.shuffle(&mut rng);
                    let mut inserts = Vec::new();
                    let mut reads = Vec::new();
                    for (i, &k) in mine.iter().enumerate() {
                        let got = map.insert(&keys[k], &offer(t, &keys[k])).unwrap();
                        let value = got.value();
                        check_offer(&keys[k], value);
                        if got.is_inserted() {
                            assert_eq!(value, &offer(t, &keys[k])[..]);
                        }
                        assert_eq!(map.get(&keys[k]).unwrap(), Some(value));
                        inserts.push((k, got.is_inserted(), value.to_vec()));
                        let other = rng.random_range(0..keys.len());
                        if let Some(v) = map.get(&keys[other]).unwrap() {
                            reads.push((other, check_offer(&keys[other], v)));
                        }
                        if t == 0 && i % 500 == 499 {
                            map.sync().unwrap();
                        }
                    }
                    (inserts, reads)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut winner: HashMap<usize, usize> = HashMap::new();
    for (t, (inserts, _)) in results.iter().enumerate() {
        for (k, inserted, _) in inserts {
            if *inserted {
                assert_eq!(winner.insert(*k, t), None, "key {k} inserted twice");
            }
        }
    }
    for (inserts, reads) in &results {
        for (k, _, value) in inserts {
            let w = winner[k];
            assert_eq!(
                value,
                &offer(w, &keys[*k]),
                "key {k}: every caller sees the winner"
            );
        }
        for (k, t) in reads {
            assert_eq!(
                winner[k], *t,
                "a reader saw a value other than the winner's"
            );
        }
    }
    let check = |map: &OnceMap| {
        assert_eq!(map.len(), winner.len() as u64);
        for (k, key) in keys.iter().enumerate() {
            let want = winner.get(&k).map(|w| offer(*w, key));
            assert_eq!(map.get(key).unwrap().map(<[u8]>::to_vec), want);
        }
        let mut listed = HashSet::new();
        for entry in map.iter() {
            let (key, value) = entry.unwrap();
            check_offer(key, value);
            assert!(listed.insert(key.to_vec()), "iter lists {key:?} twice");
        }
        assert_eq!(listed.len(), winner.len());
    };
    check(&map);
    map.sync().unwrap();
    drop(map);
    let map = OnceMap::open(&dir, "map").unwrap();
    check(&map);
}

#[test]
fn once_map_race_on_one_key() {
    let dir = Dir::temporary().unwrap();
    let map = OnceMap::open(&dir, "race").unwrap();
    let rounds = 200;
    let barrier = Barrier::new(THREADS);
    // Per thread, per round: (inserted, value, what a get before the insert saw).
    type Round = (bool, Vec<u8>, Option<Vec<u8>>);
    let results: Vec<Vec<Round>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (map, barrier) = (&map, &barrier);
                scope.spawn(move || {
                    (0..rounds)
                        .map(|round| {
                            let key = format!("round-{round}").into_bytes();
                            barrier.wait();
                            let before = if t % 2 == 0 {
                                map.get(&key).unwrap().map(<[u8]>::to_vec)
                            } else {
                                None
                            };
                            let got = map.insert(&key, &offer(t, &key)).unwrap();
                            let value = got.value().to_vec();
                            assert_eq!(map.get(&key).unwrap(), Some(&value[..]));
                            (got.is_inserted(), value, before)
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for round in 0..rounds {
        let key = format!("round-{round}").into_bytes();
        let winners: Vec<usize> = (0..THREADS).filter(|&t| results[t][round].0).collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let want = offer(winners[0], &key);
        for (t, r) in results.iter().enumerate() {
            assert_eq!(
                r[round].1, want,
                "round {round}: thread {t} saw another value"
            );
            if let Some(before) = &r[round].2 {
                assert_eq!(before, &want, "round {round}: a reader saw a wrong value");
            }
        }
        assert_eq!(map.get(&key).unwrap(), Some(&want[..]));
    }
    assert_eq!(map.len(), rounds as u64);
}

#[test]
fn content_parallel_inserts() {
    let mut s = Seeded::new("content_parallel_inserts");
    let dir = Dir::temporary().unwrap();
    let blobs = Content::open(&dir, "blobs").unwrap();
    let mut pool: Vec<Vec<u8>> = vec![Vec::new(), vec![7; 100_000]];
    while pool.len() < 200 {
        let mut b = vec![0u8; s.rng.random_range(1..3_000)];
        s.rng.fill_bytes(&mut b);
        pool.push(b);
    }
    let ids: Vec<ContentId> = pool.iter().map(|b| ContentId::of(b)).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), pool.len());
    let seeds = thread_seeds(&mut s, THREADS);
    let chosen: Vec<Vec<usize>> = thread::scope(|scope| {
        let handles: Vec<_> = seeds
            .into_iter()
            .map(|seed| {
                let (blobs, pool, ids) = (&blobs, &pool, &ids);
                scope.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed);
                    let mut mine: Vec<usize> =
                        (0..pool.len()).filter(|_| rng.random_bool(0.4)).collect();
                    mine.shuffle(&mut rng);
                    for &i in &mine {
                        let id = if rng.random_bool(0.5) {
                            blobs.insert_reader(&pool[i][..]).unwrap()
                        } else {
                            blobs.insert(&pool[i]).unwrap()
                        };
                        assert_eq!(id, ids[i]);
                        assert_eq!(blobs.get(&id).unwrap(), Some(&pool[i][..]));
                        let j = rng.random_range(0..pool.len());
                        if let Some(b) = blobs.get(&ids[j]).unwrap() {
                            assert_eq!(b, &pool[j][..], "blob {j} read back wrong");
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stored: HashSet<usize> = chosen.into_iter().flatten().collect();
    let check = |blobs: &Content| {
        assert_eq!(
            blobs.len(),
            stored.len() as u64,
            "each distinct blob stored once"
        );
        for (i, id) in ids.iter().enumerate() {
            let want = stored.contains(&i).then(|| &pool[i][..]);
            assert_eq!(blobs.get(id).unwrap(), want);
            assert_eq!(blobs.contains(id).unwrap(), want.is_some());
        }
        let listed: Vec<ContentId> = blobs.ids().map(Result::unwrap).collect();
        let want: HashSet<ContentId> = stored.iter().map(|&i| ids[i]).collect();
        assert_eq!(listed.len(), want.len());
        assert_eq!(listed.into_iter().collect::<HashSet<_>>(), want);
    };
    check(&blobs);
    blobs.sync().unwrap();
    drop(blobs);
    let blobs = Content::open(&dir, "blobs").unwrap();
    check(&blobs);
}
