//! A review of the ShardedStore's durable mode (`ShardedOptions::sync_each_write`, group
//! commit), of its writes reading the key's row once, and of the shard log's look-ahead
//! held to 1 MiB: through the public API, with the fault hooks holding one thread's log
//! flush (or failing it) so that other threads run while it is pending.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use accretion::faults::{self, Flush, HookGuard};
use accretion::{Dir, Error, GetOrCreate, Replace, ShardedOptions, ShardedStore};

fn durable() -> ShardedOptions {
    ShardedOptions {
        sync_each_write: true,
        ..ShardedOptions::default()
    }
}

fn open(dir: &Dir, options: &ShardedOptions) -> ShardedStore {
    ShardedStore::open(dir, "kv", options.clone()).unwrap()
}

/// Whether `flush` is an msync of a shard log's lane file under `root`.
fn is_log_flush(root: &Path, flush: &Flush<'_>) -> bool {
    let path = flush.path();
    matches!(flush, Flush::Range { .. })
        && path.starts_with(root)
        && path.components().any(|c| c.as_os_str() == "data")
        && path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("data-"))
}

#[derive(Default)]
struct HoldState {
    /// The thread whose next log flush is held (taken when it is).
    target: Option<ThreadId>,
    /// A flush is held now.
    held: bool,
    /// Let the held flush go on.
    released: bool,
}

/// Holds the next log flush made by one chosen thread until released; it then fails if
/// `fail` is set. Other threads' flushes go through.
struct Hold {
    state: Arc<(Mutex<HoldState>, Condvar)>,
    fail: Arc<AtomicBool>,
    _guard: HookGuard,
}

impl Hold {
    fn install(root: &Path) -> Hold {
        let root: PathBuf = root.to_path_buf();
        let state = Arc::new((Mutex::new(HoldState::default()), Condvar::new()));
        let fail = Arc::new(AtomicBool::new(false));
        let (s, f) = (Arc::clone(&state), Arc::clone(&fail));
        let guard = faults::install(move |flush| {
            if !is_log_flush(&root, flush) {
                return None;
            }
            let (lock, cv) = &*s;
            let mut st = lock.lock().unwrap();
            if st.target != Some(thread::current().id()) {
                return None;
            }
            st.target = None;
            st.held = true;
            cv.notify_all();
            while !st.released {
                st = cv.wait(st).unwrap();
            }
            f.load(Ordering::SeqCst)
                .then(|| std::io::Error::from_raw_os_error(5))
        });
        Hold {
            state,
            fail,
            _guard: guard,
        }
    }

    /// Spawns `f` on a thread whose first log flush is held; returns once it is.
    fn spawn_held<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let (lock, cv) = &*self.state;
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            rx.recv().unwrap();
            f()
        });
        lock.lock().unwrap().target = Some(handle.thread().id());
        tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut st = lock.lock().unwrap();
        while !st.held {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the held thread never flushed its shard's log"
            );
            st = cv.wait_timeout(st, left).unwrap().0;
        }
        handle
    }

    fn release(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
        let (lock, cv) = &*self.state;
        lock.lock().unwrap().released = true;
        cv.notify_all();
    }
}

/// Waits for `handle` at most `wait`; `None` if it has not finished by then.
fn finished_within<T>(handle: &JoinHandle<T>, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if handle.is_finished() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    handle.is_finished()
}

/// Runs `f` on a thread; panics (a deadlock, most likely) if it takes over `limit`.
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out,
        Err(_) => panic!("{what} did not finish within {limit:?} (a deadlock?)"),
    }
}

type Op = Box<dyn Fn(&ShardedStore) + Send + Sync>;

/// A durable-mode operation that changes nothing but whose outcome rests on another
/// thread's write (a record appended, its flush pending) must not return before that
/// record is durable: a crash after it returns could take the state it reported
/// (`Existing(v)` for a key the reopened store does not hold, `None` from a remove of a
/// key the reopened store still holds). Each case: `pending` runs on a thread whose log
/// flush is held; `observe` must then wait for it.
#[test]
fn durable_noop_ops_wait_for_the_flush_of_what_they_saw() {
    struct Case {
        name: &'static str,
        setup: Op,
        pending: Op,
        observe: Op,
    }
    let cases = vec![
        Case {
            name: "get_or_create -> Existing",
            setup: Box::new(|_| {}),
            pending: Box::new(|s| drop(s.set(b"k", b"v").unwrap())),
            observe: Box::new(|s| {
                let got = s.get_or_create(b"k", b"w").unwrap();
                assert!(
                    matches!(&got, GetOrCreate::Existing(v) if v == b"v"),
                    "{got:?}"
                );
            }),
        },
        Case {
            name: "replace -> WrongValue",
            setup: Box::new(|_| {}),
            pending: Box::new(|s| drop(s.set(b"k", b"v").unwrap())),
            observe: Box::new(|s| {
                let got = s.replace(b"k", b"x", b"other").unwrap();
                assert!(
                    matches!(&got, Replace::WrongValue(v) if v == b"v"),
                    "{got:?}"
                );
            }),
        },
        Case {
            name: "remove -> None",
            setup: Box::new(|s| drop(s.set(b"k", b"v").unwrap())),
            pending: Box::new(|s| assert!(s.remove(b"k").unwrap().is_some())),
            observe: Box::new(|s| assert!(s.remove(b"k").unwrap().is_none())),
        },
        Case {
            name: "pop_queue_head -> None",
            setup: Box::new(|s| {
                s.push_to_queue_tail(b"q", b"1").unwrap();
            }),
            pending: Box::new(|s| assert!(s.pop_queue_head(b"q").unwrap().is_some())),
            observe: Box::new(|s| assert!(s.pop_queue_head(b"q").unwrap().is_none())),
        },
        Case {
            name: "remove_from_list -> None",
            setup: Box::new(|s| drop(s.set_in_list(b"l", b"a", b"1").unwrap())),
            pending: Box::new(|s| assert!(s.remove_from_list(b"l", b"a").unwrap().is_some())),
            observe: Box::new(|s| assert!(s.remove_from_list(b"l", b"a").unwrap().is_none())),
        },
    ];
    let mut early = Vec::new();
    for case in cases {
        let dir = Dir::temporary().unwrap();
        let store = Arc::new(open(&dir, &durable()));
        store.set(b"warm", b"up").unwrap();
        (case.setup)(&store);
        let hold = Hold::install(dir.path());
        let pending = Arc::new(case.pending);
        let observe = Arc::new(case.observe);
        let a = {
            let (store, pending) = (Arc::clone(&store), Arc::clone(&pending));
            hold.spawn_held(move || pending(&store))
        };
        let b = {
            let (store, observe) = (Arc::clone(&store), Arc::clone(&observe));
            thread::spawn(move || observe(&store))
        };
        if finished_within(&b, Duration::from_millis(300)) {
            early.push(case.name);
        }
        hold.release(false);
        a.join().unwrap();
        b.join().unwrap();
    }
    assert!(
        early.is_empty(),
        "durable ops returned while the flush of the record their outcome rests on was \
         still pending: {early:?}"
    );
}

/// A durable write waits for a flush that covers its record: a second writer of the same
/// shard, arriving while another writer's flush is under way, does not return before
/// that flush (nor its own) is done.
#[test]
fn a_durable_writer_waits_for_a_flush_covering_its_record() {
    let dir = Dir::temporary().unwrap();
    let store = Arc::new(open(&dir, &durable()));
    store.set(b"warm", b"up").unwrap();
    let hold = Hold::install(dir.path());
    let a = {
        let store = Arc::clone(&store);
        hold.spawn_held(move || store.set(b"a", b"1").map(drop))
    };
    let ops: Vec<Op> = vec![
        Box::new(|s| drop(s.set(b"b", b"2").unwrap())),
        Box::new(|s| {
            s.push_to_queue_tail(b"q", b"x").unwrap();
        }),
        Box::new(|s| drop(s.set_in_list(b"l", b"k", b"v").unwrap())),
        Box::new(|s| drop(s.get_or_create(b"c", b"3").unwrap())),
    ];
    let mut threads = Vec::new();
    for op in ops {
        let store = Arc::clone(&store);
        threads.push(thread::spawn(move || op(&store)));
    }
    thread::sleep(Duration::from_millis(200));
    let early: Vec<usize> = (0..threads.len())
        .filter(|&i| threads[i].is_finished())
        .collect();
    hold.release(false);
    a.join().unwrap().unwrap();
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        early.is_empty(),
        "writers {early:?} returned while the only shard's log flush was held"
    );
    assert_eq!(store.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
}

/// A durable write whose flush is pending while a compaction, then a split, replace its
/// shard: neither waits for the flush (no lock-order cycle with the group mutex), the
/// write returns Ok, and the record is in the shard the map names, before and after a
/// reopen.
#[test]
fn durable_write_pending_across_a_compaction_and_a_split() {
    let dir = Dir::temporary().unwrap();
    let options = ShardedOptions {
        shard_bytes_max: 64 << 10,
        sync_each_write: true,
        ..ShardedOptions::default()
    };
    let store = Arc::new(open(&dir, &options));
    // Dead records (each key written three times) for `compact` to free.
    for round in 0..3u8 {
        for i in 0..8u8 {
            store.set(&[b'k', i], &[round; 1000]).unwrap();
        }
    }
    let hold = Hold::install(dir.path());
    let a = {
        let store = Arc::clone(&store);
        hold.spawn_held(move || store.set(b"late", b"v").map(drop))
    };
    let s = Arc::clone(&store);
    let compacted = within(Duration::from_secs(10), "compact", move || {
        s.compact().unwrap()
    });
    assert!(compacted >= 1, "nothing to compact");
    assert_eq!(store.get(b"late").unwrap().as_deref(), Some(&b"v"[..]));
    // Now live data over half the shard: a big write splits it.
    let s = Arc::clone(&store);
    within(Duration::from_secs(10), "a write that splits", move || {
        for i in 0..6u8 {
            s.set(&[b'b', i], &[7u8; 12 << 10]).unwrap();
        }
    });
    assert!(store.stats().splits >= 1, "{:?}", store.stats());
    hold.release(false);
    a.join().unwrap().unwrap();
    assert_eq!(store.get(b"late").unwrap().as_deref(), Some(&b"v"[..]));
    drop(store);
    let store = open(&dir, &options);
    assert_eq!(store.get(b"late").unwrap().as_deref(), Some(&b"v"[..]));
    for i in 0..8u8 {
        assert_eq!(
            store.get(&[b'k', i]).unwrap().as_deref(),
            Some(&[2u8; 1000][..])
        );
    }
    for i in 0..6u8 {
        assert_eq!(
            store.get(&[b'b', i]).unwrap().as_deref(),
            Some(&[7u8; 12 << 10][..])
        );
    }
}

/// A held flush that then fails: the writer holding it and the writers queued behind it
/// (whose records it would have covered) all say their write is applied but not synced;
/// none returns Ok. Then reads go on, every write is refused, and a reopen holds every
/// earlier write and takes durable writes again.
#[test]
fn a_failed_group_flush_fails_its_waiters_and_poisons_the_store() {
    let dir = Dir::temporary().unwrap();
    {
        let store = Arc::new(open(&dir, &durable()));
        store.set(b"before", b"0").unwrap();
        store.push_to_queue_tail(b"q", b"0").unwrap();
        let hold = Hold::install(dir.path());
        let a = {
            let store = Arc::clone(&store);
            hold.spawn_held(move || store.set(b"a", b"1").map(drop))
        };
        let b = {
            let store = Arc::clone(&store);
            thread::spawn(move || store.set(b"b", b"2").map(drop))
        };
        let c = {
            let store = Arc::clone(&store);
            thread::spawn(move || store.push_to_queue_tail(b"q", b"1").map(drop))
        };
        thread::sleep(Duration::from_millis(100));
        hold.release(true);
        for (name, r) in [
            ("a", a.join().unwrap()),
            ("b", b.join().unwrap()),
            ("c", c.join().unwrap()),
        ] {
            let err = r.expect_err(name);
            assert!(
                matches!(&err, Error::Io { op, .. } if op.contains("applied")),
                "{name}: {err}"
            );
        }
        // Applied and visible.
        assert_eq!(store.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(store.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(store.queue_len(b"q").unwrap(), 2);
        assert_eq!(store.iter().count(), 3);
        // Every write is refused.
        assert!(matches!(store.set(b"x", b"1"), Err(Error::Poisoned { .. })));
        assert!(matches!(store.remove(b"a"), Err(Error::Poisoned { .. })));
        assert!(matches!(
            store.get_or_create(b"y", b"1"),
            Err(Error::Poisoned { .. })
        ));
        assert!(store.pop_queue_head(b"q").is_err());
        assert!(store.set_in_list(b"l", b"k", b"v").is_err());
        assert!(store.clear().is_err());
        assert!(store.sync().is_err());
        assert!(store.get(b"x").unwrap().is_none());
        assert_eq!(store.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    }
    let store = open(&dir, &durable());
    assert_eq!(store.get(b"before").unwrap().as_deref(), Some(&b"0"[..]));
    for (k, v) in [(&b"a"[..], &b"1"[..]), (b"b", b"2")] {
        let got = store.get(k).unwrap();
        assert!(got.as_deref().is_none_or(|g| g == v), "{k:?}: {got:?}");
    }
    let q = store.queue_len(b"q").unwrap();
    assert!((1..=2).contains(&q), "{q}");
    store.set(b"after", b"3").unwrap();
    store.push_to_queue_tail(b"q", b"2").unwrap();
    assert!(store.stats().flushes >= 1);
    drop(store);
    let store = open(&dir, &durable());
    assert_eq!(store.get(b"after").unwrap().as_deref(), Some(&b"3"[..]));
}

/// Durable writers of every kind on four threads, against splits, compactions and
/// merges run meanwhile by a fifth: no deadlock, and every write there, before and after
/// a reopen.
#[test]
fn durable_writers_against_maintenance_hold_every_write() {
    let dir = Dir::temporary().unwrap();
    let options = ShardedOptions {
        shard_bytes_max: 48 << 10,
        sync_each_write: true,
        ..ShardedOptions::default()
    };
    let store = Arc::new(open(&dir, &options));
    const THREADS: u8 = 4;
    const EACH: u32 = 60;
    let models = within(Duration::from_secs(20), "durable writers", {
        let store = Arc::clone(&store);
        move || {
            let stop = Arc::new(AtomicBool::new(false));
            let maint = {
                let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
                thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        store.compact().unwrap();
                        store.merge_small_shards().unwrap();
                        thread::sleep(Duration::from_millis(2));
                    }
                })
            };
            let writers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let store = Arc::clone(&store);
                    thread::spawn(move || {
                        let mut model = std::collections::BTreeMap::new();
                        let mut queue = 0u64;
                        for i in 0..EACH {
                            let key = format!("{t}-{}", i % 20).into_bytes();
                            let value = vec![t; 200 + (i as usize * 37) % 900];
                            match i % 5 {
                                0 | 1 => {
                                    store.set(&key, &value).unwrap();
                                    model.insert(key, value);
                                }
                                2 => {
                                    store.remove(&key).unwrap();
                                    model.remove(&key);
                                }
                                3 => match store.get_or_create(&key, &value).unwrap() {
                                    GetOrCreate::Existing(v) => {
                                        assert_eq!(Some(&*v), model.get(&key).map(|v| &v[..]));
                                    }
                                    GetOrCreate::Created(_) => {
                                        assert!(model.insert(key, value).is_none());
                                    }
                                },
                                _ => {
                                    store.push_to_queue_tail(&[b'q', t], &value).unwrap();
                                    queue += 1;
                                }
                            }
                        }
                        (model, queue)
                    })
                })
                .collect();
            let models: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
            stop.store(true, Ordering::SeqCst);
            maint.join().unwrap();
            models
        }
    });
    let check = |store: &ShardedStore, what: &str| {
        let mut total = 0;
        for (t, (model, queue)) in models.iter().enumerate() {
            for (k, v) in model {
                assert_eq!(store.get(k).unwrap().as_deref(), Some(&v[..]), "{what}");
            }
            total += model.len() as u64;
            assert_eq!(store.queue_len(&[b'q', t as u8]).unwrap(), *queue, "{what}");
        }
        assert_eq!(store.len(), total, "{what}");
    };
    check(&store, "before reopen");
    let stats = store.stats();
    assert!(stats.flushes >= 1, "{stats:?}");
    drop(store);
    let store = open(&dir, &options);
    check(&store, "after reopen");
}

/// Bytes of disk the files under `path` take.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(path).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            allocated(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}

/// The look-ahead held to 1 MiB: records far past the limit (their lanes made by the
/// append itself) are written and read, before and after reopens; the shard's log takes
/// about what its records take on disk.
#[test]
fn appends_past_the_look_ahead_and_disk_held() {
    let dir = Dir::temporary().unwrap();
    let options = ShardedOptions::default();
    let big: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i + 1; (3 << 20) + 1000]).collect();
    let mut payload = 0u64;
    {
        let store = open(&dir, &options);
        for i in 0..6000u32 {
            store.set(&i.to_le_bytes(), &[i as u8; 1000]).unwrap();
            payload += 1000;
        }
        assert_eq!(store.stats().shards, 1);
        // Let the look-ahead helper do what it was asked to.
        thread::sleep(Duration::from_millis(200));
        let disk = allocated(dir.path());
        // The records with their headers and frames, a 4 MiB allocation step, the 1 MiB
        // look-ahead, the rows (128 KiB + 256 KiB) and small files.
        let bound = payload * 11 / 10 + (6 << 20);
        assert!(
            disk <= bound,
            "{disk} bytes on disk for {payload} bytes of records (bound {bound})"
        );
        println!("look-ahead: {disk} bytes on disk for {payload} bytes of values");
        for (i, v) in big.iter().enumerate() {
            store.set(format!("big{i}").as_bytes(), v).unwrap();
        }
    }
    for round in 0..2u32 {
        let store = open(&dir, &options);
        for (i, v) in big.iter().enumerate() {
            assert_eq!(
                store.get(format!("big{i}").as_bytes()).unwrap().as_deref(),
                Some(&v[..])
            );
        }
        for i in (0..6000u32).step_by(97) {
            assert_eq!(
                store.get(&i.to_le_bytes()).unwrap().as_deref(),
                Some(&[i as u8; 1000][..])
            );
        }
        let v = vec![9u8; 2 << 20];
        store.set(format!("more{round}").as_bytes(), &v).unwrap();
        store.sync().unwrap();
        drop(store);
        let store = open(&dir, &options);
        assert_eq!(
            store
                .get(format!("more{round}").as_bytes())
                .unwrap()
                .as_deref(),
            Some(&v[..])
        );
    }
}
