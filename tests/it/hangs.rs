//! Hangs and deadlocks reachable from safe code: each is made impossible or an error, and
//! each test here checks that. A test whose body would hang fails by a timeout instead:
//! the body runs on a thread of its own and the test waits for it at most
//! [`HANG_TIMEOUT`] (the hung thread is leaked).

use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::thread;
use std::time::Duration;

use accretion::{Dir, RandomAccess};

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
