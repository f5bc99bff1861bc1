//! `Tree::get_many` (design.md §12.6): the same answers as one `get` per key, in input
//! order, at the snapshot's seq while the writer goes on; and cold blocks of one level are
//! read in one device batch.

mod common;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arbor::io::{BlockDevice, ReadOp, SimDevice, StreamRead, WriteOp};
use arbor::{Db, Options};
use common::{small_opts, Rng};

fn key(i: u64) -> Vec<u8> {
    format!("key-{:08}", i.wrapping_mul(0x9E37_79B9) % 1_000_000).into_bytes()
}

/// Values of every size class: inline, near a leaf's limit, overflow.
fn value(i: u64) -> Vec<u8> {
    let len = match i % 50 {
        0 => 9000,
        1 => 1500,
        _ => 40 + (i % 100) as usize,
    };
    vec![(i % 251) as u8; len]
}

fn load(db: &Db, range: std::ops::Range<u64>) {
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx.tree("t").unwrap();
        for i in range {
            t.insert(key(i), value(i)).unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Random lookups (present, absent, repeated) agree with `get`, before and after the
/// writer changes the tree under the snapshot.
#[test]
fn get_many_answers_as_get_does_at_the_snapshot() {
    let db = Db::create_on(Box::new(SimDevice::new(64 << 20, 4096, 1)), small_opts()).unwrap();
    load(&db, 0..20_000);
    let snap = db.snapshot().unwrap();
    let t = snap.tree("t").unwrap().unwrap();
    let mut rng = Rng(5);
    let keys: Vec<Vec<u8>> = (0..3000).map(|_| key(rng.below(30_000))).collect();
    let want: Vec<Option<Vec<u8>>> =
        keys.iter().map(|k| t.get(k).unwrap().map(Vec::from)).collect();
    assert!(want.iter().any(Option::is_none) && want.iter().any(Option::is_some));
    assert_eq!(t.get_many(&keys).unwrap(), want);
    // The writer changes every block the snapshot reads: answers stay those of its seq.
    load(&db, 10_000..30_000);
    let tx = db.begin_write().unwrap();
    for i in 0..5_000 {
        tx.tree("t").unwrap().remove(key(i)).unwrap();
    }
    tx.commit().unwrap();
    assert_eq!(t.get_many(&keys).unwrap(), want);
    assert_eq!(t.get_many::<&[u8]>(&[]).unwrap(), Vec::<Option<Vec<u8>>>::new());
    let now = db.snapshot().unwrap().tree("t").unwrap().unwrap();
    let fresh: Vec<_> = keys.iter().map(|k| now.get(k).unwrap().map(Vec::from)).collect();
    assert_eq!(now.get_many(&keys).unwrap(), fresh);
}

/// A device that counts `read_batch` calls (the one a store reads blocks through).
struct ReadCounting {
    inner: SimDevice,
    batches: Arc<AtomicU64>,
}

impl BlockDevice for ReadCounting {
    fn sector_bytes(&self) -> u32 {
        self.inner.sector_bytes()
    }
    fn len_bytes(&self) -> u64 {
        self.inner.len_bytes()
    }
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> io::Result<()> {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.inner.read_batch(ops)
    }
    fn write_batch(&self, ops: &[WriteOp<'_>]) -> io::Result<()> {
        self.inner.write_batch(ops)
    }
    fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }
    fn describe(&self) -> String {
        format!("read-counting {}", self.inner.describe())
    }
}

/// Cold: after reopening with a cache that holds little, `get_many` of 500 keys reads its
/// tree blocks in one device batch per level and its overflow values in one more, where one
/// `get` per key reads at least once per key.
#[test]
fn cold_get_many_reads_a_level_in_one_batch() {
    let dev = SimDevice::new(64 << 20, 4096, 3);
    let db = Db::create_on(Box::new(dev.clone()), small_opts()).unwrap();
    load(&db, 0..20_000);
    drop(db);
    let batches = Arc::new(AtomicU64::new(0));
    let counting = ReadCounting { inner: dev, batches: Arc::clone(&batches) };
    let opts = Options { cache_bytes: 64 << 10, ..small_opts() };
    let db = Db::open_on(Box::new(counting), opts).unwrap();
    let t = db.snapshot().unwrap().tree("t").unwrap().unwrap();
    let keys: Vec<Vec<u8>> = (0..500).map(|i| key(i * 37 % 20_000)).collect();
    let before = batches.load(Ordering::Relaxed);
    let got = t.get_many(&keys).unwrap();
    let many = batches.load(Ordering::Relaxed) - before;
    assert!(got.iter().all(Option::is_some));
    assert!(many <= 6, "{many} read batches: one per level and one for the overflow values");
    let before = batches.load(Ordering::Relaxed);
    let one_by_one: Vec<_> = keys.iter().map(|k| t.get(k).unwrap().map(Vec::from)).collect();
    let single = batches.load(Ordering::Relaxed) - before;
    assert_eq!(one_by_one, got);
    assert!(single >= 500, "{single} read batches for 500 cold gets");
}

/// A device whose streams complete one read at a time, the newest first (a read's
/// follow-ups overtake the reads started before them), and that can fail the `fail_at`-th
/// streamed read with an I/O error.
struct OneAtATime {
    inner: SimDevice,
    streamed: Arc<AtomicU64>,
    fail_at: Arc<AtomicU64>,
}

impl BlockDevice for OneAtATime {
    fn sector_bytes(&self) -> u32 {
        self.inner.sector_bytes()
    }
    fn len_bytes(&self) -> u64 {
        self.inner.len_bytes()
    }
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> io::Result<()> {
        self.inner.read_batch(ops)
    }
    fn read_stream(
        &self,
        first: Vec<StreamRead>,
        done: &mut arbor::io::StreamDone<'_>,
    ) -> io::Result<()> {
        let mut queue = first;
        while let Some(mut read) = queue.pop() {
            let n = self.streamed.fetch_add(1, Ordering::Relaxed) + 1;
            if n == self.fail_at.load(Ordering::Relaxed) {
                return Err(io::Error::other("injected read error"));
            }
            self.inner.read_at(read.offset, read.buf.bytes())?;
            queue.extend(done(read));
        }
        Ok(())
    }
    fn write_batch(&self, ops: &[WriteOp<'_>]) -> io::Result<()> {
        self.inner.write_batch(ops)
    }
    fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }
    fn describe(&self) -> String {
        format!("one-at-a-time {}", self.inner.describe())
    }
}

/// Cold `get_many` through a stream whose reads complete one at a time, out of order, under
/// a pool too small to keep what it reads: the answers are `get`'s. A read error in the
/// middle of a call is an `Error::Io` for that call, and leaves nothing behind: the frames it
/// had claimed go back, and the next calls (and plain gets) answer as before.
#[test]
fn streamed_reads_in_any_order_and_a_failed_read() {
    let dev = SimDevice::new(64 << 20, 4096, 4);
    let db = Db::create_on(Box::new(dev.clone()), small_opts()).unwrap();
    load(&db, 0..20_000);
    drop(db);
    let (streamed, fail_at) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let device =
        OneAtATime { inner: dev, streamed: Arc::clone(&streamed), fail_at: Arc::clone(&fail_at) };
    let opts = Options { cache_bytes: 64 << 10, ..small_opts() };
    let db = Db::open_on(Box::new(device), opts).unwrap();
    let t = db.snapshot().unwrap().tree("t").unwrap().unwrap();
    let mut rng = Rng(9);
    for round in 0..20 {
        let keys: Vec<Vec<u8>> = (0..64).map(|_| key(rng.below(25_000))).collect();
        let want: Vec<Option<Vec<u8>>> =
            keys.iter().map(|k| t.get(k).unwrap().map(Vec::from)).collect();
        let before = streamed.load(Ordering::Relaxed);
        if round % 4 == 3 {
            // Fail the third read of this call's stream.
            fail_at.store(before + 3, Ordering::Relaxed);
            match t.get_many(&keys) {
                Err(arbor::Error::Io { .. }) => {}
                other => panic!("round {round}: an injected read error gave {other:?}"),
            }
            fail_at.store(0, Ordering::Relaxed);
        }
        assert_eq!(t.get_many(&keys).unwrap(), want, "round {round}");
        assert!(streamed.load(Ordering::Relaxed) > before, "round {round}: streamed");
    }
}

/// `Options::warm_on_open` reads through the same stream: a read that fails while the open
/// warms the pool stops the warming, not the open, and leaves no frame behind (every later
/// answer is right, cold or not).
#[test]
fn a_read_error_while_warming_leaves_the_open_and_the_pool_intact() {
    let dev = SimDevice::new(64 << 20, 4096, 6);
    let db = Db::create_on(Box::new(dev.clone()), small_opts()).unwrap();
    load(&db, 0..20_000);
    let want: Vec<Option<Vec<u8>>> = {
        let t = db.snapshot().unwrap().tree("t").unwrap().unwrap();
        (0..20_000).map(|i| t.get(key(i)).unwrap().map(Vec::from)).collect()
    };
    drop(db);
    for fail_at in [1, 2, 5] {
        let streamed = Arc::new(AtomicU64::new(0));
        let fail = Arc::new(AtomicU64::new(fail_at));
        let device = OneAtATime {
            inner: dev.clone(),
            streamed: Arc::clone(&streamed),
            fail_at: Arc::clone(&fail),
        };
        let opts = Options { warm_on_open: true, ..small_opts() };
        let db = Db::open_on(Box::new(device), opts).unwrap();
        assert!(streamed.load(Ordering::Relaxed) >= fail_at, "the open streamed its warming");
        fail.store(0, Ordering::Relaxed);
        let t = db.snapshot().unwrap().tree("t").unwrap().unwrap();
        for i in (0..20_000).step_by(97) {
            assert_eq!(t.get(key(i)).unwrap().map(Vec::from), want[i as usize], "key {i}");
        }
        let keys: Vec<Vec<u8>> = (0..500).map(|i| key(i * 37 % 20_000)).collect();
        let many: Vec<_> = (0..500).map(|i| want[(i * 37 % 20_000) as usize].clone()).collect();
        assert_eq!(t.get_many(&keys).unwrap(), many, "fail_at {fail_at}");
    }
}

/// Streams on four threads at once, cold, under a pool of 16 frames: each holds frames of
/// its own in loading while it walks its keys through the others' — a stream never waits
/// for another's load (two streams waiting for each other's frames would never finish), and
/// every answer is `get`'s. Different snapshots, so blocks of one's generation are older
/// blocks to another.
#[test]
fn concurrent_cold_streams_never_wait_for_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let db = Db::create(&path, small_opts()).unwrap();
    load(&db, 0..20_000);
    drop(db);
    let opts = Options { cache_bytes: 64 << 10, ..small_opts() };
    let db = Arc::new(Db::open(&path, opts).unwrap());
    let want: Arc<Vec<Option<Vec<u8>>>> = {
        let t = db.snapshot().unwrap().tree("t").unwrap().unwrap();
        Arc::new((0..25_000).map(|i| t.get(key(i)).unwrap().map(Vec::from)).collect())
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for r in 0..4u64 {
        let (db, want, done) = (Arc::clone(&db), Arc::clone(&want), done_tx.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(r + 40);
            for round in 0..60 {
                if r == 0 && round % 10 == 0 {
                    // A commit between rounds: the readers' snapshots differ in generation.
                    load(&db, 20_000 + round..20_001 + round);
                }
                let t = db.snapshot().unwrap().tree("t").unwrap().unwrap();
                let ids: Vec<u64> = (0..48).map(|_| rng.below(20_000)).collect();
                let keys: Vec<Vec<u8>> = ids.iter().map(|&i| key(i)).collect();
                let got = t.get_many(&keys).unwrap();
                for (i, g) in ids.iter().zip(got) {
                    assert_eq!(g, want[*i as usize], "thread {r} round {round} key {i}");
                }
            }
            done.send(()).unwrap();
        });
    }
    drop(done_tx);
    for _ in 0..4 {
        let waited = done_rx.recv_timeout(std::time::Duration::from_secs(120));
        assert!(waited.is_ok(), "a get_many stream never finished (deadlocked streams?)");
    }
}
