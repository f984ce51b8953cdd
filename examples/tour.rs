//! A tour of every primitive and store on a temporary store: what each did, and how fast.
//!
//! Run with `cargo run --release --example tour`. Set `TOUR_N` to change the number of
//! operations per step (default 200000).

use std::time::Instant;

use accretion::face::Store;
use accretion::{AppendOnly, Content, Dir, Entropy, Journal, OnceMap, RandomAccess};

fn rate(n: u64, start: Instant) -> String {
    let secs = start.elapsed().as_secs_f64();
    let per_sec = n as f64 / secs;
    if per_sec >= 1e6 {
        format!("{:.2} M ops/s", per_sec / 1e6)
    } else {
        format!("{:.1} k ops/s", per_sec / 1e3)
    }
}

fn main() -> accretion::Result<()> {
    let n: u64 = std::env::var("TOUR_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = Dir::temporary()?;
    println!("store directory: {}", dir.path().display());
    println!("operations per step: {n}\n");

    // Entropy
    let entropy = Entropy::open(&dir, "entropy")?;
    let start = Instant::now();
    let mut acc = 0u64;
    for i in 0..n {
        acc ^= entropy.hash(&i.to_le_bytes());
    }
    println!(
        "Entropy      tag {:016x}; {n} keyed hashes (xor {acc:016x}): {}",
        entropy.tag(),
        rate(n, start)
    );

    // Journal
    let journal = Journal::<[u64; 2]>::open(&dir, "journal")?;
    let start = Instant::now();
    for i in 0..n {
        journal.update(|v| *v = [i, v[1] + 1])?;
    }
    let updates = rate(n, start);
    let syncs = 100u64;
    let start = Instant::now();
    for i in 0..syncs {
        journal.set([i, i])?;
        journal.sync()?;
    }
    println!(
        "Journal      {n} updates: {updates}; {syncs} durable set+sync: {}",
        rate(syncs, start)
    );

    // AppendOnly
    let log = AppendOnly::open(&dir, "append")?;
    let record = [7u8; 100];
    let start = Instant::now();
    let mut first = None;
    for _ in 0..n {
        let span = log.append(&record)?;
        first.get_or_insert(span);
    }
    let appends = rate(n, start);
    let first_bytes = log.get(first.expect("appended"))?;
    let start = Instant::now();
    log.sync()?;
    println!(
        "AppendOnly   {n} appends of 100 B: {appends}; {} bytes in; sync took {:?}; first record still reads {} bytes",
        log.len(),
        start.elapsed(),
        first_bytes.len()
    );

    // RandomAccess
    let array = RandomAccess::<u64>::open(&dir, "array")?;
    let start = Instant::now();
    for i in 0..n {
        array.set(i, i + 1)?;
    }
    let writes = rate(n, start);
    let start = Instant::now();
    let mut sum = 0u64;
    for i in 0..n {
        sum += array.read(i)?;
    }
    println!(
        "RandomAccess {n} writes: {writes}; {n} reads (sum {sum}): {}",
        rate(n, start)
    );
    array.sync()?;

    // OnceMap
    let map = OnceMap::open(&dir, "oncemap")?;
    let start = Instant::now();
    for i in 0..n {
        map.insert(&i.to_be_bytes(), &record)?;
    }
    let inserts = rate(n, start);
    let start = Instant::now();
    let mut found = 0u64;
    for i in 0..n {
        found += u64::from(map.get(&i.to_be_bytes())?.is_some());
    }
    let gets = rate(n, start);
    let again = map.insert(&0u64.to_be_bytes(), b"other")?;
    map.sync()?;
    println!(
        "OnceMap      {n} inserts: {inserts}; {n} gets ({found} found): {gets}; re-insert kept the first value: {}",
        !again.is_inserted()
    );

    // Content
    let content = Content::open(&dir, "content")?;
    let blobs = (n / 10).max(1);
    let start = Instant::now();
    for i in 0..blobs {
        content.insert(format!("blob number {i}").as_bytes())?;
    }
    let inserts = rate(blobs, start);
    let dup = content.insert(b"blob number 0")?;
    let start = Instant::now();
    for i in 0..blobs {
        let id = accretion::ContentId::of(format!("blob number {i}").as_bytes());
        assert!(content.get(&id)?.is_some());
    }
    content.sync()?;
    println!(
        "Content      {blobs} blobs: {inserts}; {blobs} verified gets: {}; {} stored after a duplicate insert of {dup}",
        rate(blobs, start),
        content.len()
    );

    // LogStore
    let opts = accretion::LogOptions {
        segment_bytes: 4 << 20,
        ..accretion::LogOptions::default()
    };
    let log = accretion::LogStore::open(&dir, "log", opts.clone())?;
    let start = Instant::now();
    for i in 0..n {
        log.put(&i.to_be_bytes(), &record)?;
    }
    let puts = rate(n, start);
    let start = Instant::now();
    for i in 0..n {
        assert!(log.get(&i.to_be_bytes())?.is_some());
    }
    let gets = rate(n, start);
    let start = Instant::now();
    let mut scanned = 0u64;
    for entry in log.iter() {
        entry?;
        scanned += 1;
    }
    let scan = rate(scanned, start);
    for i in (0..n).step_by(2) {
        log.delete(&i.to_be_bytes())?;
    }
    log.merge(b"counter", &1u64.to_le_bytes(), add_u64)?;
    log.merge(b"counter", &41u64.to_le_bytes(), add_u64)?;
    let before = log.stats();
    log.compact()?;
    log.sync()?;
    let after = log.stats();
    drop(log);
    let start = Instant::now();
    let log = accretion::LogStore::open(&dir, "log", opts)?;
    let reopen = start.elapsed();
    let counter = log.get(b"counter")?.expect("merged");
    println!(
        "LogStore     {n} puts: {puts}; {n} gets: {gets}; ordered scan of {scanned}: {scan}; \
         counter merged to {}; compaction {} -> {} segments, dead bytes {} -> {}; \
         reopen of {} keys in {:.1?}",
        u64::from_le_bytes(counter[..8].try_into().expect("8 bytes")),
        before.segments,
        after.segments,
        before.dead_bytes,
        after.dead_bytes,
        log.len(),
        reopen,
    );
    drop(log);

    // BTreeStore
    let bt = accretion::BTreeStore::open(&dir, "btree", Default::default())?;
    let start = Instant::now();
    let mut txn = bt.begin_write()?;
    {
        let mut t = txn.open_tree("numbers")?;
        for i in 0..n {
            t.insert(&i.to_be_bytes(), &record)?;
        }
    }
    txn.commit()?;
    let load = rate(n, start);
    let commits = (n / 10).max(1);
    let start = Instant::now();
    for i in 0..commits {
        let mut txn = bt.begin_write()?;
        txn.open_tree("numbers")?
            .insert(&(n + i).to_be_bytes(), &record)?;
        txn.commit_unsynced()?;
    }
    let one_key = rate(commits, start);
    let snapshot = bt.begin_read();
    let numbers = snapshot.open_tree("numbers")?.expect("created above");
    let start = Instant::now();
    for i in 0..n {
        assert!(numbers.get(&i.to_be_bytes())?.is_some());
    }
    let gets = rate(n, start);
    let start = Instant::now();
    let mut scanned = 0u64;
    for entry in numbers.range(&5u64.to_be_bytes()[..]..)? {
        entry?;
        scanned += 1;
    }
    let scan = rate(scanned, start);
    drop(snapshot);
    bt.compact()?;
    let report = bt.verify()?;
    let stats = bt.stats();
    println!(
        "BTreeStore   {n} inserts in one transaction: {load}; {commits} one-key commits: \
         {one_key}; {n} gets in a snapshot: {gets}; range scan of {scanned}: {scan}; \
         height {}, {} pages verified after compaction (generation {}), write amplification {:.2}",
        numbers_height(&bt)?,
        report.pages,
        stats.generation,
        stats.write_amplification,
    );
    drop(bt);

    // HashStore
    let hs = accretion::HashStore::open(&dir, "hash", accretion::HashOptions::default())?;
    let start = Instant::now();
    for i in 0..n {
        hs.set(&i.to_be_bytes(), &record)?;
    }
    let sets = rate(n, start);
    let start = Instant::now();
    for i in 0..n {
        assert!(hs.get(&i.to_be_bytes())?.is_some());
    }
    let gets = rate(n, start);
    let start = Instant::now();
    for i in n..2 * n {
        assert!(hs.get(&i.to_be_bytes())?.is_none());
    }
    let absent = rate(n, start);
    let held = hs.get(&0u64.to_be_bytes())?.expect("set above");
    let start = Instant::now();
    for i in 0..n {
        hs.update(&i.to_be_bytes(), |old| old.map(|v| v.len().to_le_bytes()))?;
    }
    let updates = rate(n, start);
    hs.optimize(accretion::OptimizeMode::Normal)?;
    assert_eq!(
        &*held,
        &record[..],
        "a handle outlives its overwrite and the optimisation"
    );
    let report = hs.verify()?;
    let stats = hs.stats()?;
    drop(hs);
    let start = Instant::now();
    let hs = accretion::HashStore::open(&dir, "hash", accretion::HashOptions::default())?;
    let reopen = start.elapsed();
    println!(
        "HashStore    {n} sets: {sets}; {n} gets: {gets}; {n} absent gets: {absent}; \
         {n} updates: {updates}; {} entries verified, index {:.0}% full, mean probe distance \
         {:.2}, data generation {} after optimising; clean reopen in {:.1?} (rebuilt: {})",
        report.entries,
        stats.index_fill * 100.0,
        stats.probe_distance_mean,
        stats.data_generation,
        reopen,
        hs.rebuilt_at_open(),
    );
    drop(held);
    drop(hs);

    // ShardedStore
    let options = accretion::ShardedOptions::default();
    let ss = accretion::ShardedStore::open(&dir, "sharded", options.clone())?;
    let start = Instant::now();
    for i in 0..n {
        ss.set(&i.to_be_bytes(), &record)?;
    }
    let sets = rate(n, start);
    let start = Instant::now();
    for i in 0..n {
        assert!(ss.get(&i.to_be_bytes())?.is_some());
    }
    let gets = rate(n, start);
    let start = Instant::now();
    for i in n..2 * n {
        assert!(ss.get(&i.to_be_bytes())?.is_none());
    }
    let absent = rate(n, start);
    let start = Instant::now();
    let mut swapped = 0u64;
    for i in 0..n {
        let key = i.to_be_bytes();
        if let accretion::Replace::Replaced(_) = ss.replace(&key, &key, &record)? {
            swapped += 1;
        }
    }
    let cas = rate(n, start);
    let iterated = ss.iter().count();
    let stats = ss.stats();
    drop(ss);
    let start = Instant::now();
    let ss = accretion::ShardedStore::open(&dir, "sharded", options)?;
    let reopen = start.elapsed();
    println!(
        "ShardedStore {n} sets: {sets}; {n} gets: {gets}; {n} absent gets: {absent}; \
         {n} compare-and-swaps: {cas} ({swapped} swapped); {iterated} entries iterated in \
         {} shards ({} splits, {:.0}% of their slots used); clean reopen in {:.1?} \
         ({} shards rebuilt)",
        stats.shards,
        stats.splits,
        stats.fill * 100.0,
        reopen,
        ss.stats().rebuilt_at_open,
    );
    // Its lists (an LRU order here) and queues: each operation one atomic batch.
    let items = (n / 10).min(10_000);
    let start = Instant::now();
    for i in 0..items {
        ss.set_in_list_promoting(b"lru", &(i % 1000).to_be_bytes(), &record)?;
    }
    let promotes = rate(items, start);
    let start = Instant::now();
    for i in 0..items {
        ss.push_to_queue_tail(b"jobs", &i.to_be_bytes())?;
    }
    let pushes = rate(items, start);
    let start = Instant::now();
    while ss.pop_queue_head(b"jobs")?.is_some() {}
    let pops = rate(items, start);
    let oldest = ss.pop_list_head(b"lru")?.map(|item| item.key.to_vec());
    println!(
        "ShardedStore lists and queues: {items} promoting list sets: {promotes} ({} items, \
         oldest popped: {oldest:?}); {items} queue pushes: {pushes}; {items} pops: {pops}",
        ss.list_len(b"lru")? + 1,
    );
    drop(ss);

    // Every store through the common face (`accretion::face::Store`): the same code for
    // each, on stores of its own.
    let faces = n.min(20_000);
    println!();
    face_round(
        &accretion::LogStore::open(&dir, "face/log", Default::default())?,
        faces,
        &record,
    )?;
    face_round(
        &accretion::BTreeStore::open(&dir, "face/btree", Default::default())?,
        faces,
        &record,
    )?;
    face_round(
        &accretion::HashStore::open(&dir, "face/hash", Default::default())?,
        faces,
        &record,
    )?;
    face_round(
        &accretion::ShardedStore::open(&dir, "face/sharded", Default::default())?,
        faces,
        &record,
    )?;

    // The catalog: every structure of the directory, with its kind.
    println!("\nthe directory's catalog:");
    for s in accretion::catalog::list(&dir)? {
        let format = s.format.map_or("-".to_owned(), |f| f.to_string());
        println!("  {:<16} {:<13} format {format}", s.name, s.kind.name());
    }
    println!("\ndone; the temporary store is removed on exit");
    Ok(())
}

/// Puts, gets, a scan, removals of half, a compaction and a verify of any store.
fn face_round<S: Store>(store: &S, n: u64, record: &[u8]) -> accretion::Result<()> {
    let start = Instant::now();
    for i in 0..n {
        store.put(&i.to_be_bytes(), record)?;
    }
    let puts = rate(n, start);
    let start = Instant::now();
    for i in 0..n {
        assert!(store.get(&i.to_be_bytes())?.is_some());
    }
    let gets = rate(n, start);
    let start = Instant::now();
    let mut scanned = 0u64;
    for entry in store.entries()? {
        entry?;
        scanned += 1;
    }
    let scan = rate(scanned, start);
    for i in (0..n).step_by(2) {
        store.delete(&i.to_be_bytes())?;
    }
    store.compact()?;
    store.sync()?;
    let verified = store.verify()?;
    let keys = verified
        .iter()
        .find(|(name, _)| *name == "keys")
        .map_or("?".to_owned(), |(_, f)| f.to_string());
    println!(
        "face: {:<12} {n} puts: {puts}; {n} gets: {gets}; scan of {scanned}: {scan}; \
         half removed, compacted, {keys} keys verified",
        store.kind().name(),
    );
    Ok(())
}

/// Height of the tour's B-tree.
fn numbers_height(bt: &accretion::BTreeStore) -> accretion::Result<u32> {
    let snapshot = bt.begin_read();
    snapshot.open_tree("numbers")?.expect("created").height()
}

/// A merge operator: adds little-endian u64s.
fn add_u64(_key: &[u8], current: Option<&[u8]>, operand: &[u8]) -> Option<Vec<u8>> {
    let read = |b: Option<&[u8]>| {
        b.and_then(|b| b.get(..8))
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    Some((read(current) + read(Some(operand))).to_le_bytes().to_vec())
}
