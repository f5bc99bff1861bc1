//! A device that acknowledges writes and never stores them (a lost write) must make reads
//! fail with `Error::Corrupt`, never return an older image as current data.

use arbor::io::{BlockDevice, SimDevice};
use arbor::{AlignedBuf, Db, Durability, Error, Options};

/// A cache too small for the test's trees, a small dirty budget (early write-back), records
/// large enough to journal the test's transactions, checkpoints only when asked.
fn small_cache_opts() -> Options {
    Options {
        cache_bytes: 64 << 10,
        dirty_max_bytes: 32 << 10,
        journal_record_max: 400 << 10,
        checkpoint_interval: None,
        ..Options::default()
    }
}

fn image(dev: &SimDevice) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(dev.len_bytes() as usize, 4096);
    dev.read_at(0, &mut buf).unwrap();
    buf
}

/// Leaves written back early, changed and written back again in one transaction; after the
/// commit (no flush) every write since the first write-backs is lost: the device holds the
/// first images, with the same address and generation as the current ones. A snapshot that
/// reads them (the cache is too small to hold them) must get `Corrupt`, never the old
/// values (found by examples/sim: a lost write of a written-back leaf served stale data to
/// snapshots, whose pointer to it was still marked crc-pending).
#[test]
fn lost_write_of_a_written_back_leaf_is_corrupt_not_stale() {
    let dev = SimDevice::new(8 << 20, 4096, 1);
    let db = Db::create_on(Box::new(dev.clone()), small_cache_opts()).unwrap();
    let tx = db.begin_write().unwrap();
    let mut big = tx.tree("big").unwrap();
    for i in 0..2000u32 {
        big.insert(i.to_be_bytes(), [9; 100]).unwrap();
    }
    drop(big);
    tx.commit().unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.set_durability(Durability::None);
    let mut t = tx.tree("t").unwrap();
    for i in 0..400u32 {
        t.insert(i.to_be_bytes(), [1; 300]).unwrap();
    }
    let before = image(&dev);
    for i in 0..400u32 {
        t.insert(i.to_be_bytes(), [2; 300]).unwrap();
    }
    drop(t);
    assert!(!tx.commit().unwrap().durable);
    assert!(db.stats().blocks_written_early > 0);
    // Every write since `before` is lost.
    let after = image(&dev);
    for (i, (a, b)) in after.chunks(4096).zip(before.chunks(4096)).enumerate() {
        if a != b {
            dev.write_at(i as u64 * 4096, &AlignedBuf::from_slice(b, 4096)).unwrap();
        }
    }
    let snap = db.snapshot().unwrap();
    // Reading the other tree pushes the written-back leaves out of the small cache.
    assert_eq!(snap.tree("big").unwrap().unwrap().iter().unwrap().count(), 2000);
    let t = snap.tree("t").unwrap().unwrap();
    let (mut ok, mut corrupt) = (0, 0);
    for i in 0..400u32 {
        match t.get(i.to_be_bytes()) {
            Ok(Some(v)) => {
                assert_eq!(v, vec![2; 300], "key {i}: an older value served as current");
                ok += 1;
            }
            Ok(None) => panic!("key {i} lost without an error"),
            Err(Error::Corrupt { .. }) => corrupt += 1,
            Err(e) => panic!("key {i}: {e}"),
        }
    }
    assert!(corrupt > 0, "the lost writes were never read ({ok} good reads)");
}

/// Blocks whose stored image changed since `old` while keeping its generation: a later
/// write of the same address and generation (a leaf written back early, then written again
/// by a second write-back or the freeze). Putting `old` back makes that later write lost.
fn lose_rewrites(dev: &SimDevice, old: &AlignedBuf) -> usize {
    let now = image(dev);
    let mut lost = 0;
    for (i, (a, b)) in now.chunks(4096).zip(old.chunks(4096)).enumerate() {
        let (ga, gb) = (
            arbor_format::header::parse_header(a).ok().map(|h| h.generation()),
            arbor_format::header::parse_header(b).ok().map(|h| h.generation()),
        );
        if a != b && ga.is_some() && ga == gb {
            dev.write_at(i as u64 * 4096, &AlignedBuf::from_slice(b, 4096)).unwrap();
            lost += 1;
        }
    }
    lost
}

/// A tree's root leaf written back early, changed, and written again in the same
/// generation, whose later write is lost; the commit is durable (the freeze sealed the
/// catalog's pointer to the root). The next transaction must read the root through a
/// pointer carrying its crc and get `Corrupt`, never the first image's older value (found
/// by examples/sim, seed 7042657498077113284: the writer kept its own copy of every tree
/// root crc-pending after the freeze, and the stale image passed the self-checks).
#[test]
fn lost_rewrite_of_a_written_back_root_is_corrupt_not_stale_for_the_writer() {
    let dev = SimDevice::new(8 << 20, 4096, 1);
    let db = Db::create_on(Box::new(dev.clone()), small_cache_opts()).unwrap();
    let tx = db.begin_write().unwrap();
    let mut filler = tx.tree("filler").unwrap();
    for i in 0..2000u32 {
        filler.insert(i.to_be_bytes(), [9; 100]).unwrap();
    }
    drop(filler);
    tx.commit().unwrap();

    let tx = db.begin_write().unwrap();
    tx.tree("t").unwrap().insert(b"a", [1; 300]).unwrap();
    // Enough new leaves elsewhere to pass the dirty budget: the oldest allocation, the
    // root leaf of "t", is written back first.
    let mut big = tx.tree("big").unwrap();
    for i in 0..400u32 {
        big.insert(i.to_be_bytes(), [3; 100]).unwrap();
    }
    drop(big);
    assert!(db.stats().blocks_written_early > 0);
    let first = image(&dev);
    assert_eq!(tx.tree("t").unwrap().insert(b"a", [2; 300]).unwrap(), Some(vec![1; 300]));
    assert!(tx.commit().unwrap().durable);
    // The checkpoint writes the root leaf again, with the generation it was written back in.
    db.flush().unwrap();
    assert!(lose_rewrites(&dev, &first) > 0, "no block was written twice in its generation");

    let tx = db.begin_write().unwrap();
    // Reading the filler pushes the root leaf of "t" out of the small cache.
    assert_eq!(tx.tree("filler").unwrap().iter().unwrap().count(), 2000);
    match tx.tree("t").unwrap().insert(b"a", [3; 300]) {
        Err(Error::Corrupt { .. }) => {}
        Ok(old) => {
            let old = old.as_ref().map(|v| (v.len(), v[0]));
            assert_ne!(old, Some((300, 1)), "an older value served as current");
            panic!("the lost write was never read (old value {old:?})");
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}
