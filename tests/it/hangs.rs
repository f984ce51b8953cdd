//! Hangs and deadlocks reachable from safe code: each is made impossible or an error, and
//! each test here checks that. A test whose body would hang fails by a timeout instead:
//! the body runs on a thread of its own and the test waits for it at most
//! [`HANG_TIMEOUT`] (the hung thread is leaked).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use accretion::{AppendOnly, Dir, Error, LogOptions, LogStore, MergeFn, RandomAccess, WriteBatch};

/// How long a test body may take before it counts as hung.
const HANG_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a test gives another thread to start waiting for a lock.
const SETTLE: Duration = Duration::from_millis(200);

/// Runs `body` on its own thread and returns what it returns; panics if it takes longer
/// than [`HANG_TIMEOUT`] (a deadlock) or panics itself.
fn within_timeout<T: Send + 'static>(what: &str, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = channel();
    thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(HANG_TIMEOUT) {
        Ok(out) => out,
        Err(RecvTimeoutError::Timeout) => {
            panic!("{what}: hung for {HANG_TIMEOUT:?} (a deadlock)")
        }
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the test body panicked"),
    }
}

fn is_reentrant<T: std::fmt::Debug>(result: &accretion::Result<T>) -> bool {
    matches!(result, Err(Error::Reentrant { .. }))
}

// ---------------------------------------------------------------------------------------
// RandomAccess: readers never queue behind a waiting writer while they hold the stripe.

/// Wide elements (four words) are read under their stripe's lock; 1, 257 and 513 share
/// stripe 1.
type Wide = [u64; 4];

/// One thread holds a `Ref` of stripe 1 while a writer waits for that stripe, then reads
/// another element of the stripe with `get` and with `read`. With a fair read lock the
/// second read queued behind the writer, which waited for the first `Ref`: a deadlock.
#[test]
fn refs_of_one_stripe_while_a_writer_waits() {
    within_timeout("two Refs of one stripe with a waiting writer", || {
        let dir = Dir::temporary().unwrap();
        let arr = Arc::new(RandomAccess::<Wide>::open(&dir, "arr").unwrap());
        for (i, v) in [(1, 1), (257, 2), (513, 3)] {
            arr.set(i, [v; 4]).unwrap();
        }
        let first = arr.get(1).unwrap().unwrap();
        let writer = {
            let arr = Arc::clone(&arr);
            thread::spawn(move || arr.set(1, [9; 4]).unwrap())
        };
        thread::sleep(SETTLE);
        let second = arr.get(257).unwrap().unwrap();
        let third = arr.read(513).unwrap();
        assert_eq!((*first, *second, third), ([1; 4], [2; 4], [3; 4]));
        assert!(
            !writer.is_finished(),
            "the writer waits while the Refs live"
        );
        drop((first, second));
        writer.join().unwrap();
        assert_eq!(arr.read(1).unwrap(), [9; 4]);
    });
}

/// `get` then `read` of the same element, and several threads each holding a `Ref` of
/// the stripe while writers wait: every reader gets through, then every writer.
#[test]
fn readers_of_one_stripe_get_through_waiting_writers() {
    within_timeout("readers and waiting writers on one stripe", || {
        let dir = Dir::temporary().unwrap();
        let arr = Arc::new(RandomAccess::<Wide>::open(&dir, "arr").unwrap());
        arr.set(1, [1; 4]).unwrap();
        arr.set(257, [2; 4]).unwrap();
        let held = arr.get(1).unwrap().unwrap();
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let arr = Arc::clone(&arr);
                thread::spawn(move || arr.with_mut(1 + 256 * w, |v| v[3] += 10).unwrap())
            })
            .collect();
        thread::sleep(SETTLE);
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let arr = Arc::clone(&arr);
                thread::spawn(move || {
                    let a = arr.get(257).unwrap().unwrap();
                    let b = arr.read(1).unwrap();
                    (*a, b)
                })
            })
            .collect();
        assert_eq!(arr.read(1).unwrap(), *held, "get then read of one element");
        for reader in readers {
            assert_eq!(reader.join().unwrap(), ([2; 4], [1; 4]));
        }
        assert!(writers.iter().all(|w| !w.is_finished()));
        drop(held);
        for writer in writers {
            writer.join().unwrap();
        }
        assert_eq!(arr.read(1).unwrap(), [1, 1, 1, 11]);
        assert_eq!(arr.read(257).unwrap(), [2, 2, 2, 12]);
    });
}

// ---------------------------------------------------------------------------------------
// AppendOnly: an append from inside an `append_with` fill of the same buffer.

/// Records are published in order, so an append made by a fill waited for the fill's own
/// record: now it is refused, and the buffer goes on working.
#[test]
fn append_inside_a_fill_of_the_same_buffer_is_refused() {
    within_timeout("append from inside append_with", || {
        let dir = Dir::temporary().unwrap();
        let buf = AppendOnly::open(&dir, "buf").unwrap();
        let other = AppendOnly::open(&dir, "other").unwrap();
        let mut nested = Vec::new();
        let mut elsewhere = None;
        let span = buf
            .append_with(4, 1, |_, dest| {
                dest.copy_from_slice(b"fill");
                nested.push(buf.append(b"x"));
                nested.push(buf.append_aligned(b"y", 8));
                nested.push(buf.append_with(0, 1, |_, _| {}));
                // Another buffer is no problem.
                elsewhere = Some(other.append(b"fine"));
            })
            .unwrap();
        assert!(nested.iter().all(is_reentrant), "{nested:?}");
        let elsewhere = elsewhere.unwrap().unwrap();
        assert_eq!(other.get(elsewhere).unwrap(), b"fine");
        assert_eq!(buf.get(span).unwrap(), b"fill");
        assert_eq!(buf.len(), span.end(), "the refused appends took no space");
        assert_eq!(buf.records(0).count(), 1, "and wrote no frame");
        // Outside the fill, and after a fill that panicked, appends work again.
        let after = buf.append(b"after").unwrap();
        assert_eq!(buf.get(after).unwrap(), b"after");
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            buf.append_with(1, 1, |_, _| panic!("fill fails")).unwrap();
        }));
        assert!(panicked.is_err());
        let last = buf.append(b"last").unwrap();
        assert_eq!(buf.get(last).unwrap(), b"last");
        buf.sync().unwrap();
    });
}

/// A fill of one buffer appending to a second, whose fill appends to the first: the
/// inner append to the first is refused.
#[test]
fn nested_fills_of_two_buffers_refuse_the_outer_one() {
    within_timeout("append_with nested across two buffers", || {
        let dir = Dir::temporary().unwrap();
        let a = AppendOnly::open(&dir, "a").unwrap();
        let b = AppendOnly::open(&dir, "b").unwrap();
        let mut innermost = None;
        let mut middle = None;
        let outer = a
            .append_with(1, 1, |_, dest| {
                dest[0] = 1;
                middle = Some(b.append_with(1, 1, |_, dest| {
                    dest[0] = 2;
                    innermost = Some(a.append(b"x"));
                }));
            })
            .unwrap();
        assert!(is_reentrant(&innermost.unwrap()));
        let middle = middle.unwrap().unwrap();
        // Each holds its one record (behind its frame) and nothing else.
        assert_eq!((a.len(), b.len()), (outer.end(), middle.end()));
        assert_eq!((a.records(0).count(), b.records(0).count()), (1, 1));
    });
}

/// The documented restriction: a fill that hands an append to the same buffer to another
/// thread and waits for it cannot be detected. The other thread's append waits until the
/// fill returns (it is published after the fill's record), so a fill that waits with a
/// time limit sees it blocked, and it completes once the fill returns.
#[test]
fn an_append_handed_to_another_thread_waits_for_the_fill() {
    within_timeout("append handed to another thread", || {
        let dir = Dir::temporary().unwrap();
        let buf = Arc::new(AppendOnly::open(&dir, "buf").unwrap());
        let (tx, rx) = channel();
        let mut helper = None;
        let span = buf
            .append_with(4, 1, |_, dest| {
                dest.copy_from_slice(b"fill");
                let buf = Arc::clone(&buf);
                let tx = tx.clone();
                helper = Some(thread::spawn(move || {
                    let span = buf.append(b"helper").unwrap();
                    tx.send(span).unwrap();
                }));
                assert!(
                    rx.recv_timeout(Duration::from_millis(300)).is_err(),
                    "the helper's append returned before the fill did"
                );
            })
            .unwrap();
        helper.unwrap().join().unwrap();
        let helper_span = rx.recv().unwrap();
        assert!(helper_span.offset() >= span.end());
        assert_eq!(buf.get(helper_span).unwrap(), b"helper");
    });
}

// ---------------------------------------------------------------------------------------
// LogStore: a merge operator runs under the writer lock.

/// Every writing method of a store, called on `store`; each result, named.
fn write_everything(store: &LogStore) -> Vec<(&'static str, accretion::Result<()>)> {
    let mut batch = WriteBatch::new();
    batch.put(b"b", b"1");
    vec![
        ("put", store.put(b"x", b"1")),
        (
            "put_with_ttl",
            store.put_with_ttl(b"x", b"1", Duration::from_secs(60)),
        ),
        ("delete", store.delete(b"x")),
        ("write", store.write(&batch)),
        ("merge", store.merge(b"x", b"1", |_, _, o| Some(o.to_vec()))),
        ("merge_default", store.merge_default(b"x", b"1")),
        ("clear", store.clear()),
        ("sync", store.sync()),
        ("compact", store.compact()),
    ]
}

fn concat(_key: &[u8], current: Option<&[u8]>, operand: &[u8]) -> Option<Vec<u8>> {
    let mut value = current.unwrap_or_default().to_vec();
    value.extend_from_slice(operand);
    Some(value)
}

fn with_operator() -> LogOptions {
    LogOptions {
        merge_operator: Some(("concat".to_string(), Arc::new(concat) as Arc<MergeFn>)),
        ..LogOptions::default()
    }
}

/// Every writing method called from `LogStore::merge`'s operator on its own store is
/// refused, reads work there, and the store works afterwards, also after an operator
/// that panicked.
#[test]
fn store_merge_operator_writing_to_its_store_is_refused() {
    within_timeout("LogStore::merge operator writing to its store", || {
        let dir = Dir::temporary().unwrap();
        let store = LogStore::open(&dir, "kv", with_operator()).unwrap();
        let other = LogStore::open(&dir, "other", LogOptions::default()).unwrap();
        store.put(b"k", b"v").unwrap();
        let seen = Mutex::new(Vec::new());
        store
            .merge(b"k", b"+", |key, current, operand| {
                let mut seen = seen.lock().unwrap();
                seen.extend(write_everything(&store));
                // Reads, and writes to another store, are fine.
                assert_eq!(store.get(b"k").unwrap().unwrap(), b"v");
                assert_eq!(store.iter().count(), 1);
                other.put(b"from-merge", b"ok").unwrap();
                concat(key, current, operand)
            })
            .unwrap();
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 9);
        for (call, result) in &seen {
            assert!(is_reentrant(result), "{call}: {result:?}");
        }
        assert_eq!(store.get(b"k").unwrap().unwrap(), b"v+");
        assert_eq!(other.get(b"from-merge").unwrap().unwrap(), b"ok");
        // Through `merge_default` the operator is the same kind of call.
        let hook = Mutex::new(None);
        store
            .merge(b"k", b"!", |k, c, o| {
                *hook.lock().unwrap() = Some(store.merge_default(b"k", b"?"));
                concat(k, c, o)
            })
            .unwrap();
        assert!(is_reentrant(&hook.into_inner().unwrap().unwrap()));
        // A panicking operator leaves nothing behind.
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            let _ = store.merge(b"k", b"", |_, _, _| panic!("operator fails"));
        }));
        assert!(panicked.is_err());
        for (call, result) in write_everything(&store) {
            assert!(result.is_ok(), "{call} after the merges: {result:?}");
        }
    });
}

/// The same for an operator given to `WriteBatch::merge`: it runs in `LogStore::write`,
/// under the writer lock.
#[test]
fn batch_merge_operator_writing_to_its_store_is_refused() {
    within_timeout("WriteBatch::merge operator writing to its store", || {
        let dir = Dir::temporary().unwrap();
        let store = LogStore::open(&dir, "kv", with_operator()).unwrap();
        let seen = Mutex::new(Vec::new());
        let mut batch = WriteBatch::new();
        batch.put(b"k", b"v");
        batch.merge(b"k", b"+", |key, current, operand| {
            seen.lock().unwrap().extend(write_everything(&store));
            concat(key, current, operand)
        });
        store.write(&batch).unwrap();
        drop(batch);
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 9);
        for (call, result) in &seen {
            assert!(is_reentrant(result), "{call}: {result:?}");
        }
        assert_eq!(store.get(b"k").unwrap().unwrap(), b"v+");
        for (call, result) in write_everything(&store) {
            assert!(result.is_ok(), "{call} after the batch: {result:?}");
        }
    });
}

/// An operator of one store writing to a second store whose operator writes to the
/// first: the innermost write, to the first store, is refused.
#[test]
fn nested_merges_of_two_stores_refuse_the_outer_one() {
    within_timeout("merge operators nested across two stores", || {
        let dir = Dir::temporary().unwrap();
        let a = LogStore::open(&dir, "a", LogOptions::default()).unwrap();
        let b = LogStore::open(&dir, "b", LogOptions::default()).unwrap();
        let innermost = Mutex::new(None);
        let middle = Mutex::new(None);
        a.merge(b"k", b"a", |k, c, o| {
            *middle.lock().unwrap() = Some(b.merge(b"k", b"b", |k, c, o| {
                *innermost.lock().unwrap() = Some(a.put(b"x", b"1"));
                concat(k, c, o)
            }));
            concat(k, c, o)
        })
        .unwrap();
        assert!(is_reentrant(&innermost.into_inner().unwrap().unwrap()));
        assert!(middle.into_inner().unwrap().unwrap().is_ok());
        assert_eq!(a.get(b"k").unwrap().unwrap(), b"a");
        assert_eq!(b.get(b"k").unwrap().unwrap(), b"b");
    });
}

/// `Journal::update`'s closure may read the journal and sync it; a `set` or `update`
/// from inside it is refused. Found by review: the closure ran under the value's lock,
/// so `get` from inside it waited for itself forever.
#[test]
fn journal_update_closure_may_read_and_is_refused_writes() {
    within_timeout("Journal::update calling back into the journal", || {
        let dir = Dir::temporary().unwrap();
        let j = accretion::Journal::<u64>::open(&dir, "j").unwrap();
        j.set(1).unwrap();
        let inner = j
            .update(|v| {
                *v = j.get() + 1;
                j.sync().unwrap();
                (j.set(9), j.update(|w| *w = 9))
            })
            .unwrap();
        assert!(is_reentrant(&inner.0), "{:?}", inner.0);
        assert!(is_reentrant(&inner.1), "{:?}", inner.1);
        assert_eq!(j.get(), 2);
        // Other threads' writes wait for an update, and are not lost by it.
        let j = Arc::new(j);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let j = Arc::clone(&j);
                thread::spawn(move || {
                    for _ in 0..1000 {
                        j.update(|v| *v += 1).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(j.get(), 4002);
    });
}
