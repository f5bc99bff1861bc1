//! Snapshots: the seed scenario (a freed block reused while an old snapshot reads), random
//! interleavings against frozen models, concurrent readers, and the memory/disk bound.

mod common;

use arbor::io::SimDevice;
use arbor::{Db, Durability, Error, Options, Snapshot};
use common::{key, range_bounds, small_opts, snap_dump, value, Model, Rng};

fn new_db(seed: u64, opts: Options) -> Db {
    Db::create_on(Box::new(SimDevice::new(256 << 20, 4096, seed)), opts).unwrap()
}

#[test]
fn a_snapshot_sees_its_commit_while_the_writer_moves_on() {
    let db = new_db(1, small_opts());
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("t").unwrap();
    for i in 0..2000u32 {
        t.insert(i.to_be_bytes(), b"v1").unwrap();
    }
    tx.commit().unwrap();
    let snap = db.snapshot().unwrap();
    let before = snap_dump(&snap).unwrap();
    for round in 0..5 {
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(if round % 2 == 0 { Durability::None } else { Durability::Immediate });
        let mut t = tx.tree("t").unwrap();
        for i in (0..2000u32).step_by(3) {
            t.remove(i.to_be_bytes()).unwrap();
        }
        for i in 2000..2500u32 {
            t.insert(i.to_be_bytes(), b"new").unwrap();
        }
        tx.tree("other").unwrap().insert(b"x", b"y").unwrap();
        tx.commit().unwrap();
        assert_eq!(snap_dump(&snap).unwrap(), before, "round {round}");
    }
    let t = snap.tree("t").unwrap().unwrap();
    assert_eq!(t.get(3u32.to_be_bytes()).unwrap().map(Vec::from), Some(b"v1".to_vec()));
    assert_eq!(t.get(2100u32.to_be_bytes()).unwrap(), None);
    assert!(snap.tree("other").unwrap().is_none());
    let rev: Vec<_> = t.range(..).unwrap().rev().take(2).map(|r| r.unwrap().0).collect();
    assert_eq!(rev, vec![1999u32.to_be_bytes().to_vec(), 1998u32.to_be_bytes().to_vec()]);
    assert_eq!(db.stats().snapshots_live, 1);
    // `stats` never waits for an open write transaction, even on the same thread.
    let tx = db.begin_write().unwrap();
    let s = db.stats();
    assert!(s.visible_seq >= snap.seq() && s.trees == 2, "{s:?}");
    drop(tx);
    drop(t);
    drop(snap);
    assert_eq!(db.stats().snapshots_live, 0);
}

/// Checkpoints only when a test asks (`end_generation`), so generations end where it says.
fn generation_opts() -> Options {
    Options { checkpoint_interval: None, ..small_opts() }
}

/// After an `Immediate` commit, a checkpoint: the next transaction starts a generation and
/// copies what it changes (before the journal, every Immediate commit did this). `None`
/// commits stay in the open generation.
fn end_generation(db: &Db, durability: Durability) {
    if durability == Durability::Immediate {
        db.flush().unwrap();
    }
}

/// The seed (the btrfs tree-mod-log reuse fix, design.md §6): a snapshot holds a seq;
/// removals free a root's child and promote it (the old root freed); another tree is built
/// so the allocator hands the freed addresses out again; the old snapshot must still read
/// exactly its contents. `durability` None keeps everything in one generation, where freed
/// blocks were never written and their addresses are reusable at once; Immediate frees
/// through pending generations.
fn seed_scenario(durability: Durability, disable_pinning: bool) -> Result<(), String> {
    // A small device (128 data blocks): the allocator runs out of never-used blocks within a
    // few rounds and must hand out freed addresses, whatever order it searches in.
    let dev = SimDevice::new(896 << 10, 4096, 7);
    let db = Db::create_on(Box::new(dev), generation_opts()).unwrap();
    if disable_pinning {
        db.testing_disable_pinning();
    }
    let val = vec![0xAB; 600];
    let mut tx = db.begin_write().unwrap();
    tx.set_durability(durability);
    let mut t = tx.tree("a").unwrap();
    for i in 0..40u32 {
        t.insert(i.to_be_bytes(), &val).unwrap(); // a root over a few leaves
    }
    tx.commit().unwrap();
    end_generation(&db, durability);
    let snap = db.snapshot().unwrap();
    let want = snap_dump(&snap).map_err(|e| e.to_string())?;
    let depth_before = db.stats().blocks_free;
    // Remove everything but the first leaf's keys: the root ends with one child and is
    // replaced by it; the emptied leaves and the old root are freed.
    let mut tx = db.begin_write().unwrap();
    tx.set_durability(durability);
    let mut t = tx.tree("a").unwrap();
    for i in 3..40u32 {
        t.remove(i.to_be_bytes()).unwrap();
    }
    tx.commit().unwrap();
    end_generation(&db, durability);
    // The more complicated case: the freed addresses are reallocated several times, each
    // life with new log entries, while the old snapshot walks down.
    for round in 0..24u32 {
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(durability);
        let name = format!("b{round}");
        let mut b = tx.tree(&name).unwrap();
        for i in 0..60u32 {
            b.insert((i * 7 + round).to_be_bytes(), [round as u8; 500]).unwrap();
        }
        tx.commit().unwrap();
        end_generation(&db, durability);
        end_generation(&db, durability);
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(durability);
        tx.delete_tree(&name).unwrap();
        tx.commit().unwrap();
        end_generation(&db, durability);
        end_generation(&db, durability);
        let got = snap_dump(&snap).map_err(|e| e.to_string())?;
        if got != want {
            return Err(format!("round {round}: snapshot returned wrong data"));
        }
        let t = snap.tree("a").map_err(|e| e.to_string())?.ok_or("tree a vanished")?;
        for i in 0..40u32 {
            let v = t.get(i.to_be_bytes()).map_err(|e| e.to_string())?;
            if v.as_deref() != Some(val.as_slice()) {
                return Err(format!("round {round}: get {i} returned {:?}", v.map(|v| v.len())));
            }
        }
    }
    let _ = depth_before;
    Ok(())
}

#[test]
fn seed_freed_blocks_are_not_reused_while_a_snapshot_holds_them() {
    for durability in [Durability::None, Durability::Immediate] {
        seed_scenario(durability, false).unwrap_or_else(|e| panic!("{durability:?}: {e}"));
    }
}

#[test]
fn seed_scenario_fails_without_pinning() {
    // The same scenario with the pinned set disabled must go wrong (an error or wrong data):
    // the test above really depends on the pin.
    for durability in [Durability::None, Durability::Immediate] {
        let outcome = seed_scenario(durability, true);
        println!("{durability:?} without pinning: {outcome:?}");
        assert!(outcome.is_err(), "{durability:?}: reading reused blocks went unnoticed");
    }
}

/// Random interleavings of writes, commits (every durability), aborts, flushes, snapshot
/// creation and drop: every live snapshot's full scan and random gets equal the model
/// frozen at its seq, across many generations and with a small cache.
fn interleavings(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let opts = Options { cache_bytes: 64 << 10, ..small_opts() };
    let db = new_db(seed, opts);
    let mut committed = Model::new();
    let mut snaps: Vec<(Snapshot, Model)> = Vec::new();
    for step in 0..steps {
        match rng.below(10) {
            0 => {
                if snaps.len() < 6 {
                    snaps.push((db.snapshot().unwrap(), committed.clone()));
                }
            }
            1 => {
                if !snaps.is_empty() {
                    let i = rng.below(snaps.len() as u64) as usize;
                    snaps.swap_remove(i);
                }
            }
            2 => db.flush().unwrap(),
            _ => random_txn(&db, &mut rng, &mut committed, step),
        }
        check_snapshots(&snaps, &mut rng, seed, step);
    }
    let stats = db.stats();
    drop(snaps);
    assert!(db.check().unwrap().is_ok());
    assert!(stats.snapshots_live <= 6);
}

const NAMES: [&str; 3] = ["alpha", "beta", "gamma"];

/// A random write transaction, committed (with a random durability) or aborted; `committed`
/// follows.
fn random_txn(db: &Db, rng: &mut Rng, committed: &mut Model, step: usize) {
    let mut working = committed.clone();
    let mut tx = db.begin_write().unwrap();
    for _ in 0..1 + rng.below(40) {
        let name = NAMES[rng.below(3) as usize];
        if rng.chance(2) {
            tx.delete_tree(name).unwrap();
            working.remove(name);
            continue;
        }
        let mut t = tx.tree(name).unwrap();
        let m = working.entry(name.to_string()).or_default();
        let k = key(rng, 300);
        if rng.chance(30) {
            assert_eq!(t.remove(&k).unwrap(), m.remove(&k), "step {step}");
        } else {
            let v = value(rng);
            assert_eq!(t.insert(&k, &v).unwrap(), m.insert(k, v), "step {step}");
        }
    }
    if rng.chance(15) {
        tx.abort().unwrap();
    } else {
        tx.set_durability(match rng.below(3) {
            0 => Durability::Immediate,
            1 => Durability::Eventual,
            _ => Durability::None,
        });
        tx.commit().unwrap();
        *committed = working;
    }
}

/// Checks one snapshot in full and a few gets on each against its frozen model.
fn check_snapshots(snaps: &[(Snapshot, Model)], rng: &mut Rng, seed: u64, step: usize) {
    if let Some(i) = (!snaps.is_empty()).then(|| rng.below(snaps.len() as u64) as usize) {
        let (snap, want) = &snaps[i];
        assert_eq!(&snap_dump(snap).unwrap(), want, "seed {seed} step {step} seq {}", snap.seq());
    }
    for (snap, want) in snaps {
        for _ in 0..3 {
            let name = NAMES[rng.below(3) as usize];
            let k = key(rng, 300);
            let got = match snap.tree(name).unwrap() {
                Some(t) => t.get(&k).unwrap().map(Vec::from),
                None => None,
            };
            let expect = want.get(name).and_then(|m| m.get(&k)).cloned();
            assert_eq!(got, expect, "seed {seed} step {step}: get in snapshot {}", snap.seq());
        }
    }
}

#[test]
fn random_interleavings_match_frozen_models() {
    let steps: usize =
        std::env::var("ARBOR_SNAPSHOT_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(1500);
    for seed in 1..=4 {
        interleavings(seed, steps);
    }
}

/// Four readers scan snapshots continuously while the writer commits 10,000 transactions.
/// Every transaction moves an amount between two accounts and writes a pair of marker keys,
/// so in any consistent view the balances sum to the same total and markers come in pairs.
#[test]
fn readers_see_consistent_snapshots_while_the_writer_commits() {
    const ACCOUNTS: u64 = 200;
    const TOTAL: u64 = ACCOUNTS * 1000;
    let txns: u64 =
        std::env::var("ARBOR_SNAPSHOT_TXNS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let db = std::sync::Arc::new(new_db(11, Options { cache_bytes: 256 << 10, ..small_opts() }));
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("acct").unwrap();
    for a in 0..ACCOUNTS {
        t.insert(a.to_be_bytes(), 1000u64.to_le_bytes()).unwrap();
    }
    tx.commit().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let db = std::sync::Arc::clone(&db);
            let done = std::sync::Arc::clone(&done);
            std::thread::spawn(move || scan_until_done(&db, &done, r, TOTAL))
        })
        .collect();
    let mut rng = Rng(5);
    for n in 0..txns {
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(if n % 50 == 0 { Durability::Immediate } else { Durability::None });
        let mut t = tx.tree("acct").unwrap();
        let (from, to) = (rng.below(ACCOUNTS), rng.below(ACCOUNTS));
        let get = |t: &arbor::WriteTree<'_, '_>, a: u64| {
            u64::from_le_bytes(t.get(a.to_be_bytes()).unwrap().unwrap().try_into().unwrap())
        };
        let amount = rng.below(get(&t, from) + 1);
        let f = get(&t, from) - amount;
        t.insert(from.to_be_bytes(), f.to_le_bytes()).unwrap();
        let g = get(&t, to) + amount;
        t.insert(to.to_be_bytes(), g.to_le_bytes()).unwrap();
        let mut m = tx.tree("marks").unwrap();
        let id = (n % 500).to_be_bytes();
        if n >= 500 {
            m.remove([&id[..], b"a"].concat()).unwrap();
            m.remove([&id[..], b"b"].concat()).unwrap();
        }
        m.insert([&id[..], b"a"].concat(), b"").unwrap();
        m.insert([&id[..], b"b"].concat(), b"").unwrap();
        if rng.chance(3) {
            tx.abort().unwrap();
        } else {
            tx.commit().unwrap();
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let scans: Vec<u64> = readers.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(scans.iter().all(|&s| s > 0), "every reader scanned: {scans:?}");
    assert!(db.check().unwrap().is_ok());
}

/// A reader of `readers_see_consistent_snapshots_while_the_writer_commits`: scans fresh
/// snapshots until `done`, checking the balances' total and the marker pairs; returns the
/// number of scans.
fn scan_until_done(db: &Db, done: &std::sync::atomic::AtomicBool, r: usize, total: u64) -> u64 {
    let mut scans = 0u64;
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        let snap = db.snapshot().unwrap();
        let acct = snap.tree("acct").unwrap().unwrap();
        let sum: u64 = acct
            .iter()
            .unwrap()
            .map(|kv| u64::from_le_bytes(kv.unwrap().1[..].try_into().unwrap()))
            .sum();
        assert_eq!(sum, total, "reader {r}: balances at seq {}", snap.seq());
        if let Some(marks) = snap.tree("marks").unwrap() {
            let keys: Vec<Vec<u8>> =
                marks.iter().unwrap().map(|kv| kv.unwrap().0.into_vec()).collect();
            assert_eq!(keys.len() % 2, 0, "reader {r}: markers in pairs");
            for pair in keys.chunks(2) {
                assert_eq!(pair[0][..8], pair[1][..8], "reader {r}: pair split");
            }
            // Backwards too.
            let back = marks.iter().unwrap().rev().count();
            assert_eq!(back, keys.len());
        }
        scans += 1;
    }
    scans
}

fn load(db: &Db, keys: u32) {
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("t").unwrap();
    for i in 0..keys {
        t.insert((i.wrapping_mul(2_654_435_761)).to_be_bytes(), [7u8; 100]).unwrap();
    }
    tx.commit().unwrap();
    end_generation(db, Durability::Immediate);
}

fn churn(db: &Db, rng: &mut Rng, keys: u32, per_txn: u32) -> arbor::Result<()> {
    let tx = db.begin_write()?;
    let mut t = tx.tree("t")?;
    for _ in 0..per_txn {
        let i = rng.below(u64::from(keys)) as u32;
        t.insert((i.wrapping_mul(2_654_435_761)).to_be_bytes(), rng.bytes(100))?;
    }
    tx.commit()?;
    end_generation(db, Durability::Immediate);
    Ok(())
}

fn used_blocks(db: &Db) -> u64 {
    let s = db.stats();
    s.blocks_total - s.blocks_free - s.blocks_reserved
}

/// Without any limit reached, a snapshot held forever pins at most the blocks of its own
/// tree: blocks allocated after it and freed again are reused (a ≤ S < f, design.md §10.5).
#[test]
fn a_long_snapshot_pins_at_most_its_own_tree() {
    let db = new_db(21, generation_opts());
    load(&db, 20_000);
    let tree_blocks = db.check().unwrap().tree_blocks;
    let snap = db.snapshot().unwrap();
    let mut rng = Rng(3);
    let mut peak_used = 0;
    for _ in 0..300 {
        churn(&db, &mut rng, 20_000, 200).unwrap();
        let s = db.stats();
        assert!(s.pinned_blocks <= tree_blocks + 16, "{} pinned of {tree_blocks}", s.pinned_blocks);
        peak_used = peak_used.max(used_blocks(&db));
    }
    // The snapshot's tree and the live one, the pending frees of the last generations (each
    // commit rewrites at most ~200 leaves and their parents) and allocator blocks. Without
    // the a ≤ S rule every freed block would stay pinned: 300 commits × ~200 blocks.
    let bound = 2 * tree_blocks + 4 * 200 + 256;
    assert!(peak_used <= bound, "peak {peak_used} blocks, tree {tree_blocks}");
    assert_eq!(
        snap.tree("t").unwrap().unwrap().get(0u32.to_be_bytes()).unwrap().map(Vec::from),
        Some(vec![7; 100])
    );
    drop(snap);
    churn(&db, &mut rng, 20_000, 1).unwrap();
    assert_eq!(db.stats().pinned_blocks, 0, "pins released when the snapshot left");
}

#[test]
fn expire_oldest_keeps_pins_and_history_under_the_bound() {
    let opts = Options { pinned_max_blocks: 100, modlog_max_bytes: 256 << 10, ..generation_opts() };
    let db = new_db(22, opts);
    load(&db, 20_000);
    let used0 = used_blocks(&db);
    let mut peak = used0;
    let snap = db.snapshot().unwrap();
    let t = snap.tree("t").unwrap().unwrap();
    let mut rng = Rng(4);
    for n in 0..200 {
        let mut tx = db.begin_write().unwrap();
        // Half the commits stay in one generation so the mod log grows too.
        let durability = if n % 2 == 0 { Durability::None } else { Durability::Immediate };
        tx.set_durability(durability);
        let mut w = tx.tree("t").unwrap();
        for _ in 0..100 {
            let i = rng.below(20_000) as u32;
            w.insert((i.wrapping_mul(2_654_435_761)).to_be_bytes(), rng.bytes(100)).unwrap();
        }
        tx.commit().unwrap();
        end_generation(&db, durability);
        let s = db.stats();
        assert!(s.pinned_blocks <= 100, "commit {n}: {} pinned", s.pinned_blocks);
        assert!(s.modlog_bytes + s.retained_bytes <= 256 << 10, "commit {n}: history over bound");
        peak = peak.max(used_blocks(&db));
    }
    // Data + the pinned bound + what two generations of 100 random inserts rewrite (pending
    // until reusable) + allocator blocks: the store does not grow with the held snapshot.
    assert!(peak <= used0 + 100 + 2 * 2 * 150 + 64, "peak {peak} blocks from {used0}");
    assert!(snap.is_expired());
    let e = t.get(0u32.to_be_bytes()).unwrap_err();
    assert!(matches!(e, Error::SnapshotExpired { .. }));
    // The error names the bound reached, its value and the option that raises it.
    let msg = e.to_string();
    assert!(msg.contains("Options::pinned_max_blocks = 100"), "{msg}");
    assert!(matches!(snap.tree_names(), Err(Error::SnapshotExpired { .. })));
    let s = db.stats();
    assert!(s.snapshot_expirations >= 1 && s.snapshots_live == 0, "{s:?}");
    // A new snapshot works.
    let fresh = db.snapshot().unwrap();
    assert_eq!(fresh.tree("t").unwrap().unwrap().len().unwrap(), 20_000);
}

#[test]
fn writer_waits_then_errors_and_never_waits_on_itself() {
    use std::time::{Duration, Instant};
    let opts = Options {
        pinned_max_blocks: 50,
        snapshot_policy: arbor::SnapshotPolicy::WriterWaits { timeout: Duration::from_millis(300) },
        ..small_opts()
    };
    let db = std::sync::Arc::new(new_db(23, opts));
    load(&db, 20_000);
    let mut rng = Rng(5);
    // Held by this thread: the writer gives up at once rather than wait for itself.
    let mine = db.snapshot().unwrap();
    let mut err = None;
    for _ in 0..100 {
        if let Err(e) = churn(&db, &mut rng, 20_000, 100) {
            err = Some(e);
            break;
        }
    }
    let started = Instant::now();
    assert!(matches!(churn(&db, &mut rng, 20_000, 1), Err(Error::SnapshotBoundReached { .. })));
    assert!(started.elapsed() < Duration::from_millis(250), "waited on its own snapshot");
    assert!(matches!(err, Some(Error::SnapshotBoundReached { .. })), "{err:?}");
    assert!(db.stats().pinned_blocks > 50);
    drop(mine);
    churn(&db, &mut rng, 20_000, 1).unwrap();
    assert!(db.stats().pinned_blocks <= 50, "pins released with the snapshot");
    // Held by another thread that lets go after 150 ms: the writer waits, then proceeds.
    let (tx, rx) = std::sync::mpsc::channel();
    let other = std::thread::spawn({
        let db = std::sync::Arc::clone(&db);
        move || {
            let s = db.snapshot().unwrap();
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(150));
            drop(s);
        }
    });
    rx.recv().unwrap();
    churn(&db, &mut rng, 20_000, 100).unwrap(); // frees blocks the reader pins: over the bound
    let started = Instant::now();
    churn(&db, &mut rng, 20_000, 1).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(20), "did not wait for the reader");
    other.join().unwrap();
    // Held by another thread for good: the writer errors after the timeout.
    writer_times_out(&db, &mut rng);
    churn(&db, &mut rng, 20_000, 1).unwrap();
}

/// A snapshot held by another thread for good: the writer errors after the timeout.
fn writer_times_out(db: &std::sync::Arc<Db>, rng: &mut Rng) {
    use std::time::{Duration, Instant};
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn({
        let db = std::sync::Arc::clone(db);
        move || {
            let s = db.snapshot().unwrap();
            tx.send(()).unwrap();
            let _ = stop_rx.recv();
            drop(s);
        }
    });
    rx.recv().unwrap();
    let mut failed = None;
    for _ in 0..100 {
        let started = Instant::now();
        if let Err(e) = churn(db, rng, 20_000, 100) {
            failed = Some((e, started.elapsed()));
            break;
        }
    }
    let (e, waited) = failed.expect("the bound was reached");
    assert!(matches!(e, Error::SnapshotBoundReached { .. }), "{e}");
    assert!(e.to_string().contains("Options::"), "names the option: {e}");
    assert!(waited >= Duration::from_millis(300), "gave up after {waited:?}");
    stop_tx.send(()).unwrap();
    holder.join().unwrap();
}

/// `Range::next_ref` / `next_back_ref` lend the same entries as the iterator's guards, in
/// order, from either end and both at once, across overflow values and every bound kind.
#[test]
fn borrowed_range_steps_agree_with_the_iterator() {
    use std::collections::BTreeMap;
    let db = Db::create_on(Box::new(SimDevice::new(64 << 20, 4096, 21)), small_opts()).unwrap();
    let mut rng = Rng(21);
    let mut model = BTreeMap::new();
    let tx = db.begin_write().unwrap();
    for _ in 0..3000 {
        let (k, v) = (key(&mut rng, 5000), value(&mut rng));
        tx.tree("t").unwrap().insert(&k, &v).unwrap();
        model.insert(k, v);
    }
    tx.commit().unwrap();
    let t = db.snapshot().unwrap().tree("t").unwrap().unwrap();
    let owned = |e: Option<arbor::Result<(&[u8], &[u8])>>| {
        e.map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
    };
    for round in 0..200 {
        let (a, b) = (key(&mut rng, 5000), key(&mut rng, 5000));
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let (s, e) = range_bounds(&lo, &hi, round);
        let want: Vec<(Vec<u8>, Vec<u8>)> =
            model.range::<[u8], _>((s, e)).map(|(k, v)| (k.clone(), v.clone())).collect();
        assert!(want.iter().any(|(_, v)| v.len() > 1000) || want.len() < 50, "round {round}");
        let mut fwd = Vec::new();
        let mut r = t.range((s, e)).unwrap();
        while let Some(x) = owned(r.next_ref()) {
            fwd.push(x);
        }
        assert_eq!(fwd, want, "round {round}: forward");
        let mut back = Vec::new();
        let mut r = t.range((s, e)).unwrap();
        while let Some(x) = owned(r.next_back_ref()) {
            back.push(x);
        }
        back.reverse();
        assert_eq!(back, want, "round {round}: backward");
        // Both ends, borrowed and lent mixed, meet without a duplicate.
        let mut r = t.range((s, e)).unwrap();
        let (mut head, mut tail) = (Vec::new(), Vec::new());
        loop {
            let front = match round % 2 {
                0 => owned(r.next_ref()),
                _ => r.next().map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()),
            };
            let Some(x) = front else { break };
            head.push(x);
            let Some(x) = owned(r.next_back_ref()) else { break };
            tail.push(x);
        }
        tail.reverse();
        head.extend(tail);
        assert_eq!(head, want, "round {round}: both ends");
    }
}
