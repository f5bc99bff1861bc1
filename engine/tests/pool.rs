//! The buffer pool (design.md §12) and the values snapshot reads lend from it: a 64 KiB pool
//! that evicts on nearly every read, readers on four threads while the writer commits and
//! reuses addresses, and guards held across commits, evictions and their snapshot's expiry.

mod common;

use std::sync::{Arc, Mutex};

use arbor::pool::BufferPool;
use arbor::{Db, Error, Options};
use common::{small_opts, Rng};

const KEYS: u32 = 4000;
/// Commits after the load each rewrite the keys `i % STRIPES == commit % STRIPES`.
const STRIPES: u32 = 7;

fn key(i: u32) -> [u8; 4] {
    i.wrapping_mul(2_654_435_761).to_be_bytes()
}

/// The value of key `i` as written by commit `version` (0: the load): both are in it, so a
/// read of another key's or another commit's bytes — or a mix — cannot pass for it.
fn value(i: u32, version: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(96);
    for _ in 0..12 {
        v.extend_from_slice(&i.to_le_bytes());
        v.extend_from_slice(&version.to_le_bytes());
    }
    v
}

fn tiny_pool() -> Options {
    Options { cache_bytes: 64 << 10, ..small_opts() }
}

fn load(db: &Db) -> u64 {
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx.tree("t").unwrap();
        for i in 0..KEYS {
            t.insert(key(i), value(i, 0)).unwrap();
        }
    }
    tx.commit().unwrap().seq
}

/// Commit `c` rewrites one stripe of keys with version `c`; returns its seq.
fn rewrite_stripe(db: &Db, c: u32) -> u64 {
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx.tree("t").unwrap();
        for i in (c % STRIPES..KEYS).step_by(STRIPES as usize) {
            t.insert(key(i), value(i, c)).unwrap();
        }
    }
    tx.commit().unwrap().seq
}

/// The version of key `i` a snapshot at `seq` sees, from the writer's (seq, commit) history.
fn version_at(history: &[(u64, u32)], seq: u64, i: u32) -> u32 {
    let visible = history.iter().filter(|&&(s, _)| s <= seq).map(|&(_, c)| c);
    visible.filter(|&c| c == 0 || c % STRIPES == i % STRIPES).max().expect("the load is visible")
}

/// Four readers take snapshots and read random keys and short ranges through a 64 KiB pool
/// (16 frames: nearly every block read evicts another) while the writer rewrites stripes
/// of keys, freeing blocks whose addresses later commits reuse. Every read equals the model
/// at the snapshot's seq.
///
/// Repeated (`ARBOR_POOL_ROUNDS`, 8 by default): on a buffered store (tmpfs) one round in
/// about twenty read a block written back early that changed between the reader's table
/// lookup and its read — `Corrupt`, once a wrong value — before reads of such blocks looked
/// the table up again after reading (design.md §12.3).
#[test]
fn four_readers_under_a_64k_pool_read_exactly_their_snapshots() {
    let rounds = std::env::var("ARBOR_POOL_ROUNDS").ok().and_then(|v| v.parse().ok());
    for _ in 0..rounds.unwrap_or(8) {
        four_readers_round();
    }
}

fn four_readers_round() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::create(dir.path().join("s"), tiny_pool()).unwrap());
    let history = Arc::new(Mutex::new(vec![(load(&db), 0u32)]));
    db.flush().unwrap();
    let readers: Vec<_> = (0..4u64)
        .map(|r| {
            let (db, history) = (Arc::clone(&db), Arc::clone(&history));
            std::thread::spawn(move || {
                let mut rng = Rng(r + 11);
                let mut reads = 0u64;
                for _ in 0..25 {
                    let snap = db.snapshot().unwrap();
                    let seq = snap.seq();
                    // The writer records a commit right after it returns: wait for it.
                    let h = loop {
                        let h = history.lock().unwrap().clone();
                        if h.last().is_some_and(|&(s, _)| s >= seq) {
                            break h;
                        }
                        std::thread::yield_now();
                    };
                    let t = snap.tree("t").unwrap().unwrap();
                    for _ in 0..40 {
                        let i = rng.below(u64::from(KEYS)) as u32;
                        let got = t.get(key(i)).unwrap().expect("every key is present");
                        let want = value(i, version_at(&h, seq, i));
                        assert_eq!(got, want, "key {i} at seq {seq}");
                        reads += 1;
                    }
                    let start = rng.below(u64::from(KEYS)) as u32;
                    for item in t.range(key(start)..).unwrap().take(8) {
                        let (k, v) = item.unwrap();
                        let bytes: [u8; 4] = k[..].try_into().unwrap();
                        let i = u32::from_be_bytes(bytes).wrapping_mul(inverse());
                        assert_eq!(v, value(i, version_at(&h, seq, i)), "range key {i}");
                    }
                }
                reads
            })
        })
        .collect();
    for c in 1..=40 {
        let seq = rewrite_stripe(&db, c);
        history.lock().unwrap().push((seq, c));
        if c % 8 == 0 {
            // Checkpoints make blocks clean (read through the pool) and free old ones.
            db.flush().unwrap();
        }
    }
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert_eq!(reads, 4 * 25 * 40);
    let stats = db.stats();
    assert!(stats.cache_bytes <= 64 << 10, "pool over budget: {} bytes", stats.cache_bytes);
    assert!(db.check().unwrap().is_ok());
}

/// The multiplicative inverse of the key scrambler modulo 2^32 (keys map back to `i`).
fn inverse() -> u32 {
    let a: u32 = 2_654_435_761;
    // Newton's iteration for the inverse of an odd number modulo 2^32.
    let mut x = a;
    for _ in 0..5 {
        x = x.wrapping_mul(2u32.wrapping_sub(a.wrapping_mul(x)));
    }
    assert_eq!(a.wrapping_mul(x), 1);
    x
}

/// Values lent by `get` stay exactly as read while the writer rewrites every key (freeing
/// the blocks they lie in, whose addresses are reused), the 64 KiB pool evicts around them,
/// and the bound on pinned blocks expires their snapshot — whose later reads then fail with
/// `SnapshotExpired`, never torn bytes.
#[test]
fn guards_keep_their_bytes_across_commits_evictions_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { pinned_max_blocks: 40, ..tiny_pool() };
    let db = Db::create(dir.path().join("s"), opts).unwrap();
    load(&db);
    // A checkpoint: the loaded blocks are clean, so reads lend them from the pool's frames.
    db.flush().unwrap();
    let snap = db.snapshot().unwrap();
    let t = snap.tree("t").unwrap().unwrap();
    let held: Vec<(u32, arbor::Guard)> =
        (0..KEYS).step_by(97).map(|i| (i, t.get(key(i)).unwrap().unwrap())).collect();
    for c in 1..=3 {
        let tx = db.begin_write().unwrap();
        {
            let mut w = tx.tree("t").unwrap();
            for i in 0..KEYS {
                w.insert(key(i), value(i, c)).unwrap();
            }
        }
        tx.commit().unwrap();
        db.flush().unwrap();
    }
    assert!(snap.is_expired(), "the pinned bound should have expired the snapshot");
    assert!(matches!(t.get(key(1)), Err(Error::SnapshotExpired { .. })));
    // Guards can move to another thread; each still holds the load's bytes.
    let check = std::thread::spawn(move || {
        for (i, g) in &held {
            assert_eq!(*g, value(*i, 0), "guard of key {i}");
        }
        held.len()
    });
    assert_eq!(check.join().unwrap(), 42);
    let now = db.snapshot().unwrap().tree("t").unwrap().unwrap();
    for i in (0..KEYS).step_by(13) {
        assert_eq!(now.get(key(i)).unwrap().unwrap(), value(i, 3));
    }
    assert!(db.check().unwrap().is_ok());
}

fn fill(v: u8) -> impl FnOnce(&mut [u8]) -> arbor::Result<()> {
    move |frame| {
        frame.fill(v);
        Ok(())
    }
}

/// The pool's own rules: the budget bounds resident frames; a discarded address pinned by
/// a reader is retired (the reader keeps its bytes, nobody new is served them, the last
/// unpin frees the frame); a failed load leaves the frame evicted; addresses past the
/// reservation are read around the pool.
#[test]
fn the_pool_bounds_frames_and_retires_discarded_pinned_ones() {
    let pool = BufferPool::new(4096, 2 * 4096, 64);
    for a in 0..5u64 {
        drop(pool.load(a, fill(a as u8)).unwrap().expect("room"));
        assert!(pool.len() <= 2, "{} frames resident", pool.len());
    }
    let held = pool.load(9, fill(9)).unwrap().expect("room");
    pool.discard(9);
    assert!(held.iter().all(|&b| b == 9), "a retired frame changed under its pin");
    assert!(pool.pin(9).is_none(), "a retired frame was pinned again");
    assert!(pool.load(9, fill(10)).unwrap().is_none(), "a retired frame was reloaded");
    let before = pool.len();
    drop(held);
    assert_eq!(pool.len(), before - 1, "the last unpin frees a retired frame");
    let err = pool.load(9, |_| Err(Error::Corrupt { addr: 9, reason: "test".into() }));
    assert!(err.is_err());
    assert!(pool.pin(9).is_none(), "a failed load left the frame resident");
    let reloaded = pool.load(9, fill(11)).unwrap().expect("room");
    assert!(reloaded.iter().all(|&b| b == 11));
    drop(reloaded);
    pool.install(9, &[12; 4096]);
    assert!(pool.pin(9).unwrap().iter().all(|&b| b == 12), "install replaces the image");
    assert!(pool.load(pool.capacity(), fill(1)).unwrap().is_none());
}

/// `discard_many` (a commit's frees): unpinned frames are evicted (runs of consecutive
/// addresses released together), a pinned one is retired and freed by its last unpin,
/// evicted frames and addresses past the reservation are left alone.
#[test]
fn discard_many_evicts_runs_and_retires_pinned_frames() {
    let pool = BufferPool::new(4096, 64 * 4096, 64);
    for a in [1u64, 2, 3, 4, 7, 9, 10] {
        drop(pool.load(a, fill(a as u8)).unwrap().expect("room"));
    }
    let held = pool.pin(4).expect("resident");
    assert_eq!(pool.len(), 7);
    pool.discard_many(&[1, 2, 3, 4, 5, 7, 10, pool.capacity() + 1]);
    for a in [1u64, 2, 3, 4, 5, 7, 10] {
        assert!(pool.pin(a).is_none(), "discarded block {a} is still served");
    }
    assert!(pool.pin(9).unwrap().iter().all(|&b| b == 9), "block 9 was not discarded");
    assert!(held.iter().all(|&b| b == 4), "a retired frame changed under its pin");
    assert_eq!(pool.len(), 2, "blocks 4 (retired, pinned) and 9 stay counted");
    drop(held);
    assert_eq!(pool.len(), 1, "the last unpin frees the retired frame");
    let again = pool.load(2, fill(20)).unwrap().expect("room");
    assert!(again.iter().all(|&b| b == 20), "a discarded address loads afresh");
}

/// A guard lent from the pool that outlives the last `Db` handle keeps its bytes readable
/// (the store's memory stays until it drops), but the close releases the store's lock: the
/// store opens again while the guard lives, and the guard still reads its own bytes.
#[test]
fn a_guard_outliving_the_last_handle_keeps_its_bytes_not_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let db = Db::create(&path, small_opts()).unwrap();
    load(&db);
    db.flush().unwrap();
    let g = db.snapshot().unwrap().tree("t").unwrap().unwrap().get(key(5)).unwrap().unwrap();
    drop(db);
    let db = Db::open(&path, small_opts()).expect("the close released the lock");
    assert_eq!(g, value(5, 0));
    let tx = db.begin_write().unwrap();
    tx.tree("t").unwrap().insert(key(5), value(5, 1)).unwrap();
    tx.commit().unwrap();
    assert_eq!(g, value(5, 0), "the old store's guard keeps its bytes");
    drop(g);
    let t = db.snapshot().unwrap().tree("t").unwrap().unwrap();
    assert_eq!(t.len().unwrap(), 4000);
    assert_eq!(t.get(key(5)).unwrap().unwrap(), value(5, 1));
}

/// A frame lent to a streamed read (`Loading::lend`): filled through the lent handle, it is
/// published by `finish` only once the handle is back; a load dropped after its lent frame
/// returns leaves the frame evicted (it loads again); ending a load while its frame is still
/// lent is a bug the pool refuses (it would publish bytes a read may still be writing).
#[test]
fn a_lent_frame_is_back_before_its_load_ends() {
    use arbor::io::ReadBuf;
    let pool = BufferPool::new(4096, 4 * 4096, 64);
    let mut loading = pool.start_load(3).expect("an evicted frame with room");
    let mut lent = loading.lend();
    lent.bytes().fill(7);
    drop(lent);
    let pin = loading.finish();
    assert!(pin.iter().all(|&b| b == 7));
    drop(pin);
    let mut loading = pool.start_load(4).expect("room");
    drop(loading.lend());
    drop(loading);
    assert!(pool.pin(4).is_none(), "an abandoned load left its frame resident");
    assert!(pool.start_load(4).is_some(), "an abandoned load kept its frame claimed");
    let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut loading = pool.start_load(5).expect("room");
        let lent = loading.lend();
        let _ = loading.finish();
        drop(lent);
    }));
    assert!(ended.is_err(), "a load finished while its frame was lent");
}

/// A generation of more than 8,192 blocks outside the pool's huge-page range is written in
/// batches whose installs run while the next batch is written (design.md §11.6): a reader
/// on another thread during that checkpoint, and every read after it and after a reopen,
/// sees exactly the committed values.
#[test]
fn a_large_checkpoint_installs_while_it_writes() {
    const N: u32 = 140_000;
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("store");
    let opts = Options {
        cache_bytes: 1 << 20,
        dirty_max_bytes: 1 << 30,
        checkpoint_interval: None,
        ..small_opts()
    };
    let big = |i: u32| {
        let mut v = value(i, 1);
        v.extend_from_slice(&value(i, 1));
        v.extend_from_slice(&value(i, 1));
        v
    };
    let db = Db::create(&path, opts.clone()).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx.tree("t").unwrap();
        for i in 0..N {
            t.insert(key(i), big(i)).unwrap();
        }
    }
    tx.commit().unwrap();
    let reading = std::sync::atomic::AtomicBool::new(true);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut rng = Rng(7);
            let snap = db.snapshot().unwrap();
            let t = snap.tree("t").unwrap().unwrap();
            while reading.load(std::sync::atomic::Ordering::Relaxed) {
                let i = rng.below(u64::from(N)) as u32;
                assert_eq!(t.get(key(i)).unwrap().as_deref(), Some(&big(i)[..]), "key {i}");
            }
        });
        db.flush().unwrap();
        reading.store(false, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap();
    });
    let written = db.stats().blocks_written;
    assert!(written >= 9000, "the checkpoint wrote {written} blocks, too few to pipeline");
    let check = |db: &Db| {
        let snap = db.snapshot().unwrap();
        let t = snap.tree("t").unwrap().unwrap();
        for i in (0..N).step_by(7) {
            assert_eq!(t.get(key(i)).unwrap().as_deref(), Some(&big(i)[..]), "key {i}");
        }
    };
    check(&db);
    drop(db);
    let db = Db::open(&path, opts).unwrap();
    check(&db);
    assert!(db.check().unwrap().is_ok());
}

/// `Options::warm_on_open` (design.md §12.8): a store reopened with it has every internal
/// node in the pool, so each cold get reads one block, its leaf; without it, a get reads
/// the internal nodes it finds cold too. A budget of two blocks warms no more than that.
#[test]
fn warm_on_open_leaves_only_the_leaf_to_read() {
    let dev = arbor::io::SimDevice::new(64 << 20, 4096, 11);
    let opts = Options { cache_bytes: 8 << 20, ..small_opts() };
    let db = Db::create_on(Box::new(dev.clone()), opts.clone()).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx.tree("t").unwrap();
        for i in 0..40_000u32 {
            t.insert(i.wrapping_mul(0x9E37_79B9).to_be_bytes(), value(i, 1)).unwrap();
        }
    }
    tx.commit().unwrap();
    drop(db);
    // Reads of distinct leaves (keys far apart), counted by the store: (reads, leaves).
    let cold_gets = |opts: Options| {
        let db = Db::open_on(Box::new(dev.clone()), opts).unwrap();
        let warmed = db.stats().block_reads;
        let t = db.snapshot().unwrap().tree("t").unwrap().unwrap();
        let before = db.stats().block_reads;
        for i in (0..40_000u32).step_by(4_000) {
            let v = t.get(i.wrapping_mul(0x9E37_79B9).to_be_bytes()).unwrap();
            assert_eq!(v.as_deref(), Some(&value(i, 1)[..]), "key {i}");
        }
        (warmed, db.stats().block_reads - before)
    };
    let (warmed, reads) = cold_gets(Options { warm_on_open: true, ..opts.clone() });
    assert!(warmed >= 3, "{warmed} blocks read at open: the tree has internal levels");
    assert_eq!(reads, 10, "10 cold gets after warming read only their leaves");
    let (_, reads) = cold_gets(Options { warm_on_open: false, ..opts.clone() });
    assert!(reads >= 20, "{reads} reads for 10 cold gets without warming");
    let budget = Options { cache_bytes: 64 << 10, warm_on_open: true, ..opts };
    let db = Db::open_on(Box::new(dev), budget).unwrap();
    let stats = db.stats();
    assert!(stats.cache_blocks <= 2 + 1, "{} blocks resident", stats.cache_blocks);
}
