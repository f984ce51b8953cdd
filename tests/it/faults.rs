//! Failures placed with the fault-injection hooks (`accretion::faults`): a flush that
//! fails as a full or failing disk makes it fail.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use accretion::faults::{self, HookGuard};
use accretion::{Dir, Error, LogOptions, LogStore};

/// Fails every flush under `root` with ENOSPC while `on` is set.
fn fail_flushes_under(root: &Path, on: Arc<AtomicBool>) -> HookGuard {
    let root: PathBuf = root.to_path_buf();
    faults::install(move |flush| {
        (flush.path().starts_with(&root) && on.load(Ordering::SeqCst))
            .then(|| std::io::Error::from_raw_os_error(28))
    })
}

/// A durable write whose sync fails returns the error, stays applied (as documented),
/// and leaves the store refusing writes; reopened, the store holds the write or not.
/// Found by review: the error said nothing of the write's state, and the docs promised
/// that nothing of a failed write is applied.
#[test]
fn a_durable_write_whose_sync_fails_is_applied_and_poisons_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        sync_each_write: true,
        ..LogOptions::default()
    };
    {
        let dir = Dir::open(tmp.path()).unwrap();
        let kv = LogStore::open(&dir, "kv", opts.clone()).unwrap();
        kv.put(b"a", b"1").unwrap();
        let failing = Arc::new(AtomicBool::new(true));
        let _hook = fail_flushes_under(tmp.path(), Arc::clone(&failing));
        let err = kv.put(b"b", b"2").unwrap_err();
        assert!(
            matches!(&err, Error::Io { op, .. } if op.starts_with("sync a durable write")),
            "{err}"
        );
        assert!(err.is_storage_full(), "{err}");
        assert!(err.to_string().contains("applied"), "{err}");
        failing.store(false, Ordering::SeqCst);
        assert_eq!(kv.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
        assert!(matches!(kv.put(b"c", b"3"), Err(Error::Poisoned { .. })));
        assert!(
            kv.get(b"c").unwrap().is_none(),
            "a refused write is not applied"
        );
        assert_eq!(kv.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    }
    let dir = Dir::open(tmp.path()).unwrap();
    let kv = LogStore::open(&dir, "kv", opts).unwrap();
    assert_eq!(kv.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    let b = kv.get(b"b").unwrap();
    assert!(b.as_deref().is_none_or(|v| v == b"2"), "{b:?}");
    assert!(kv.get(b"c").unwrap().is_none());
    kv.put(b"d", b"4").unwrap();
    assert_eq!(kv.get(b"d").unwrap().as_deref(), Some(&b"4"[..]));
}

/// A durable writer that waited on another writer's group sync, which then failed,
/// gets the same "applied, unknown durability" error, not a bare `Poisoned` (which the
/// docs say leaves nothing applied). Found by review.
#[test]
fn a_durable_write_that_waited_on_a_failed_group_sync_says_it_is_applied() {
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        sync_each_write: true,
        ..LogOptions::default()
    };
    let dir = Dir::open(tmp.path()).unwrap();
    let kv = Arc::new(LogStore::open(&dir, "kv", opts).unwrap());
    kv.put(b"warm", b"0").unwrap();
    let armed = Arc::new(AtomicBool::new(true));
    let segments = tmp.path().join("kv");
    let _hook = {
        let armed = Arc::clone(&armed);
        faults::install(move |flush| {
            let ours = flush.path().starts_with(&segments)
                && flush.path().to_string_lossy().contains("log-");
            (ours && armed.swap(false, Ordering::SeqCst)).then(|| {
                // The leader's sync: slow, then failing, as a dying disk's.
                std::thread::sleep(Duration::from_millis(600));
                std::io::Error::from_raw_os_error(5)
            })
        })
    };
    let leader = {
        let kv = Arc::clone(&kv);
        std::thread::spawn(move || kv.put(b"a", b"1"))
    };
    std::thread::sleep(Duration::from_millis(150));
    let waiter = kv.put(b"b", b"2");
    let leader = leader.join().unwrap();
    for (name, result) in [("leader", &leader), ("waiter", &waiter)] {
        assert!(
            matches!(result, Err(Error::Io { op, .. }) if op.starts_with("sync a durable write")),
            "{name}: {result:?}"
        );
    }
    assert_eq!(kv.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
    assert!(matches!(kv.put(b"c", b"3"), Err(Error::Poisoned { .. })));
}
