//! Space exhaustion, and test stores (files, or memory devices in the memory pass) and loop
//! devices end to end.

mod common;

use arbor::io::SimDevice;
use arbor::{Db, Error, Options};
use arbor_testkit::store::{self, needs_real_file};
use arbor_testkit::LoopDevice;
use common::small_opts;

fn fill_until_no_space(db: &Db) -> u64 {
    let mut committed = 0u64;
    'fill: for round in 0..10_000u64 {
        let tx = db.begin_write().unwrap();
        let mut t = tx.tree("t").unwrap();
        for i in 0..200u64 {
            let k = (round * 200 + i).to_be_bytes();
            match t.insert(k, [0xAB; 300]) {
                Ok(_) => {}
                Err(Error::NoSpace) => {
                    tx.abort().unwrap();
                    break 'fill;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        tx.commit().unwrap();
        committed += 200;
    }
    committed
}

#[test]
fn no_space_keeps_commits_and_deleting_frees_space() {
    let dev = SimDevice::new(8 << 20, 4096, 1);
    let db = Db::create_on(Box::new(dev.clone()), small_opts()).unwrap();
    let committed = fill_until_no_space(&db);
    assert!(committed > 1000, "only {committed} keys fit");
    let image = dev.crash();
    drop(db);
    let db = Db::open_on(Box::new(image.clone()), small_opts()).unwrap();
    {
        let tx = db.begin_write().unwrap();
        let t = tx.tree("t").unwrap();
        assert_eq!(t.len().unwrap(), committed);
        for i in (0..committed).step_by(97) {
            assert_eq!(t.get(i.to_be_bytes()).unwrap(), Some(vec![0xAB; 300]));
        }
    }
    assert!(db.check().unwrap().is_ok());
    // Deleting makes room again once the freeing generation is durable.
    let tx = db.begin_write().unwrap();
    assert!(tx.delete_tree("t").unwrap());
    tx.commit().unwrap();
    let tx = db.begin_write().unwrap();
    tx.tree("other").unwrap().insert(b"k", b"v").unwrap();
    tx.commit().unwrap();
    let again = fill_until_no_space(&db);
    assert!(again * 10 >= committed * 9, "refilled only {again} of {committed} keys");
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn value_and_key_limits() {
    let db = Db::create_on(Box::new(SimDevice::new(64 << 20, 4096, 2)), small_opts()).unwrap();
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("t").unwrap();
    assert!(matches!(
        t.insert([1u8; 1025], b"v"),
        Err(Error::KeyTooLarge { len: 1025, max: 1024 })
    ));
    t.insert([1u8; 1024], b"").unwrap();
    t.insert(b"", b"empty key").unwrap();
    assert_eq!(t.get(b"").unwrap(), Some(b"empty key".to_vec()));
    assert_eq!(t.get([1u8; 1024]).unwrap(), Some(Vec::new()));
    tx.commit().unwrap();
}

#[test]
fn a_hundred_mib_value_round_trips() {
    let _serial = common::serialized_with_spawns();
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("big.arbor");
    let value: Vec<u8> =
        (0..100u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    {
        let db = store::create(&path, Options::default()).unwrap();
        let tx = db.begin_write().unwrap();
        tx.tree("blobs").unwrap().insert(b"big", &value).unwrap();
        tx.commit().unwrap();
    }
    let db = store::open(&path, Options::default()).unwrap();
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("blobs").unwrap();
    assert!(t.get(b"big").unwrap().as_deref() == Some(value.as_slice()));
    assert!(t.remove(b"big").unwrap().is_some());
    tx.commit().unwrap();
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn a_second_opener_gets_locked() {
    if needs_real_file("a_second_opener_gets_locked", "the lock of a file") {
        return;
    }
    let _serial = common::serialized_with_spawns();
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("a.arbor");
    let db = Db::create(&path, Options::default()).unwrap();
    assert!(matches!(Db::open(&path, Options::default()), Err(Error::Locked { .. })));
    drop(db);
    drop(Db::open(&path, Options::default()).unwrap());
}

#[test]
fn wrong_targets_are_refused() {
    let _serial = common::serialized_with_spawns();
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("a.arbor");
    drop(store::create(&path, Options::default()).unwrap());
    // Creating over an existing store needs force.
    let again = store::create(&path, Options::default());
    assert!(matches!(again, Err(Error::ExistingData { .. })));
    // A target of zeros is not a store.
    let zeros = dir.path().join("zeros");
    store::write_bytes(&zeros, &vec![0u8; 1 << 20]);
    let none = store::open(&zeros, Options::default());
    assert!(matches!(none, Err(Error::NotAnArborStore { .. })));
}

/// `create` on `path` without overwriting: the `ExistingData` description, or a panic.
fn refused(path: &std::path::Path) -> String {
    match store::create(path, Options::default()) {
        Err(Error::ExistingData { what }) => what,
        Ok(_) => panic!("{}: create overwrote it", path.display()),
        Err(e) => panic!("{}: expected ExistingData, got {e}", path.display()),
    }
}

/// Issue 12: `create` refuses any target with non-zero bytes in its first or last MiB (not
/// only known signatures), leaves it untouched, and says what it found.
#[test]
fn create_refuses_any_data_unless_told_to_overwrite() {
    let dir = arbor_testkit::temp_dir!();
    let text = dir.path().join("notes.txt");
    // 4 KiB, a whole sector (what a memory device holds).
    let notes = b"shopping: eggs, flour\nremember: the store is not a scratch file\n".repeat(64);
    store::write_bytes(&text, &notes);
    let what = refused(&text);
    assert!(what.contains("non-zero data in the first MiB (at byte offset 0)"), "{what}");
    assert_eq!(store::read_bytes(&text), notes, "the refused file changed");

    // Data only in the last MiB of a larger file.
    let tail = dir.path().join("tail");
    let mut bytes = vec![0u8; 8 << 20];
    let at = bytes.len() - 1000;
    bytes[at] = 0x42;
    store::write_bytes(&tail, &bytes);
    let what = refused(&tail);
    assert!(
        what.contains(&format!("non-zero data in the last MiB (at byte offset {at})")),
        "{what}"
    );
    assert!(store::read_bytes(&tail) == bytes, "the refused file changed");

    // A known signature is named.
    let ext = dir.path().join("ext");
    let mut bytes = vec![0u8; 4 << 20];
    bytes[1080..1082].copy_from_slice(&[0x53, 0xEF]);
    store::write_bytes(&ext, &bytes);
    assert!(refused(&ext).contains("ext2/ext3/ext4"));

    // Told to overwrite, create goes ahead.
    let opts = Options { overwrite_existing: true, ..Options::default() };
    drop(store::create(&text, opts).unwrap());
    drop(store::open(&text, Options::default()).unwrap());

    // New, empty and all-zero targets are accepted as they are.
    let empty = dir.path().join("empty");
    store::write_bytes(&empty, b"");
    let zeros = dir.path().join("zeros");
    store::write_bytes(&zeros, &vec![0u8; 8 << 20]);
    for path in [dir.path().join("new"), empty, zeros] {
        drop(store::create(&path, Options::default()).unwrap());
        drop(store::open(&path, Options::default()).unwrap());
    }
}

#[test]
fn loop_device_create_write_reopen() {
    if needs_real_file("loop_device_create_write_reopen", "a loop device") {
        return;
    }
    let _serial = common::serialized_with_spawns();
    let dir = arbor_testkit::temp_dir!();
    let backing = dir.path().join("loop.img");
    std::fs::write(&backing, vec![0u8; 64 << 20]).unwrap();
    let Some(lo) = LoopDevice::attach_or_skip(&backing, "loop_device_create_write_reopen") else {
        return;
    };
    let dev = lo.path();
    {
        let db = Db::create(dev, Options::default()).unwrap();
        assert!(matches!(Db::open(dev, Options::default()), Err(Error::Locked { .. })));
        let tx = db.begin_write().unwrap();
        let mut t = tx.tree("t").unwrap();
        for i in 0..10_000u32 {
            t.insert(i.to_be_bytes(), i.to_le_bytes()).unwrap();
        }
        tx.commit().unwrap();
    }
    let db = Db::open(dev, Options::default()).unwrap();
    let tx = db.begin_write().unwrap();
    let t = tx.tree("t").unwrap();
    assert_eq!(t.len().unwrap(), 10_000);
    assert_eq!(t.get(77u32.to_be_bytes()).unwrap(), Some(77u32.to_le_bytes().to_vec()));
}

/// `delete_tree` hands the tree's written blocks to the persisted orphan list; later commits
/// free them a bounded number at a time, across a reopen, until the space is back.
#[test]
fn deleted_trees_are_freed_incrementally_and_survive_a_reopen() {
    let dev = SimDevice::new(256 << 20, 4096, 9);
    let db = Db::create_on(Box::new(dev.clone()), small_opts()).unwrap();
    let used = |db: &Db| {
        let s = db.stats();
        s.blocks_total - s.blocks_free - s.blocks_reserved
    };
    let tx = db.begin_write().unwrap();
    tx.tree("keep").unwrap().insert(b"k", b"v").unwrap();
    tx.commit().unwrap();
    let baseline = used(&db);
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("big").unwrap();
    for i in 0..60_000u32 {
        t.insert(i.to_be_bytes(), [9u8; 100]).unwrap();
    }
    t.insert(b"overflow", vec![3u8; 50_000]).unwrap();
    tx.commit().unwrap();
    db.flush().unwrap(); // the tree's blocks are written: deleting it orphans them
    let loaded = used(&db);
    assert!(loaded > baseline + 1500, "{loaded} vs {baseline}");
    // Delete and abort: nothing changes.
    let tx = db.begin_write().unwrap();
    assert!(tx.delete_tree("big").unwrap());
    tx.abort().unwrap();
    assert_eq!(db.stats().orphan_subtrees, 0);
    let tx = db.begin_write().unwrap();
    assert!(tx.delete_tree("big").unwrap());
    tx.commit().unwrap();
    assert!(db.stats().orphan_subtrees > 0, "the written tree went to the orphan list");
    assert!(db.check().unwrap().is_ok(), "orphaned blocks are owned, not leaked");
    // A few commits free part of it (freed blocks are reusable once checkpoints made the
    // freeing generation and the next one durable); then a clean reopen carries on.
    for i in 0..2u32 {
        let tx = db.begin_write().unwrap();
        tx.tree("keep").unwrap().insert(i.to_be_bytes(), b"x").unwrap();
        tx.commit().unwrap();
        db.flush().unwrap();
    }
    db.begin_write().unwrap().abort().unwrap(); // a transaction start takes what is free
    let partway = used(&db);
    assert!(partway < loaded && db.stats().orphan_subtrees > 0, "{partway} of {loaded}");
    drop(db);
    let db = Db::open_on(Box::new(dev.crash()), small_opts()).unwrap();
    assert!(db.stats().orphan_subtrees > 0, "the orphan list was persisted");
    assert!(db.check().unwrap().is_ok());
    for i in 0..20u32 {
        let tx = db.begin_write().unwrap();
        tx.tree("keep").unwrap().insert((100 + i).to_be_bytes(), b"x").unwrap();
        tx.commit().unwrap();
        db.flush().unwrap();
    }
    assert_eq!(db.stats().orphan_subtrees, 0);
    assert!(db.check().unwrap().is_ok());
    assert!(used(&db) < baseline + 64, "space came back: {} vs {baseline}", used(&db));
}

/// A transaction far larger than the dirty budget: private leaves are written back early
/// (their memory released) and read back when they change; the commit, a snapshot, a reopen
/// after a power loss and `check` all see exactly the data.
#[test]
fn a_transaction_larger_than_the_dirty_budget() {
    let dev = SimDevice::new(256 << 20, 4096, 12);
    let opts = Options { dirty_max_bytes: 128 << 10, ..small_opts() };
    let db = Db::create_on(Box::new(dev.clone()), opts.clone()).unwrap();
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("t").unwrap();
    let n = 40_000u32;
    for i in 0..n {
        // Scattered keys: leaves written back early are read back in and changed again.
        let k = i.wrapping_mul(2_654_435_761).to_be_bytes();
        t.insert(k, [i as u8; 120]).unwrap();
    }
    for i in (0..n).step_by(7) {
        t.remove(i.wrapping_mul(2_654_435_761).to_be_bytes()).unwrap();
    }
    assert!(db.stats().blocks_written_early > 500, "{:?}", db.stats());
    tx.commit().unwrap();
    let expect = |i: u32| (!i.is_multiple_of(7)).then(|| vec![i as u8; 120]);
    let snap = db.snapshot().unwrap();
    let st = snap.tree("t").unwrap().unwrap();
    for i in (0..n).step_by(97) {
        assert_eq!(
            st.get(i.wrapping_mul(2_654_435_761).to_be_bytes()).unwrap().map(Vec::from),
            expect(i)
        );
    }
    // Later changes to blocks written back in the committed generation, seen by the snapshot
    // as they were.
    let mut tx = db.begin_write().unwrap();
    tx.set_durability(arbor::Durability::None);
    let mut t = tx.tree("t").unwrap();
    for i in (1..n).step_by(11) {
        t.insert(i.wrapping_mul(2_654_435_761).to_be_bytes(), b"changed").unwrap();
    }
    tx.commit().unwrap();
    for i in (1..n).step_by(11) {
        assert_eq!(
            st.get(i.wrapping_mul(2_654_435_761).to_be_bytes()).unwrap().map(Vec::from),
            expect(i)
        );
    }
    assert_eq!(st.len().unwrap(), u64::from(n - n.div_ceil(7)));
    drop(st);
    drop(snap);
    db.flush().unwrap();
    assert!(db.check().unwrap().is_ok());
    drop(db);
    let db = Db::open_on(Box::new(dev.crash()), opts).unwrap();
    assert!(db.check().unwrap().is_ok());
    let snap = db.snapshot().unwrap();
    let t = snap.tree("t").unwrap().unwrap();
    for i in (0..n).step_by(13) {
        let want = if i % 11 == 1 { Some(b"changed".to_vec()) } else { expect(i) };
        assert_eq!(
            t.get(i.wrapping_mul(2_654_435_761).to_be_bytes()).unwrap().map(Vec::from),
            want,
            "{i}"
        );
    }
}

/// A free-space repair on a store whose deleted tree still has orphaned subtrees waiting to
/// be freed: the orphans' blocks are owned (the next commits free them), not leaked. A repair
/// that walked only the catalog freed them, and its own commit then panicked freeing them a
/// second time (issue 12).
#[test]
fn free_space_repair_keeps_orphaned_subtrees() {
    let dev = SimDevice::new(256 << 20, 4096, 21);
    let db = Db::create_on(Box::new(dev.clone()), small_opts()).unwrap();
    let tx = db.begin_write().unwrap();
    let mut keep = tx.tree("keep").unwrap();
    for i in 0..500u32 {
        keep.insert(i.to_be_bytes(), i.to_le_bytes()).unwrap();
    }
    let orphans = arbor_testkit::orphan_a_big_tree(&db, tx);
    assert!(db.check().unwrap().is_ok());

    let (freed, marked) = arbor::check::repair_free_space(&db).unwrap();
    assert_eq!((freed, marked), (0, 0), "nothing was leaked or marked free");
    assert_eq!(db.stats().orphan_subtrees, orphans, "the repair left the orphans alone");
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    // The next commits free the orphans as usual, and a reopen finds a clean store.
    for i in 0..20u32 {
        let tx = db.begin_write().unwrap();
        tx.tree("keep").unwrap().insert((1000 + i).to_be_bytes(), b"x").unwrap();
        tx.commit().unwrap();
    }
    assert_eq!(db.stats().orphan_subtrees, 0);
    drop(db);
    let db = Db::open_on(Box::new(dev.crash()), small_opts()).unwrap();
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let tx = db.begin_write().unwrap();
    assert_eq!(tx.tree_names().unwrap(), vec!["keep".to_string()]);
    let keep = tx.tree("keep").unwrap();
    assert_eq!(keep.len().unwrap(), 520);
    for i in (0..500u32).step_by(37) {
        assert_eq!(keep.get(i.to_be_bytes()).unwrap(), Some(i.to_le_bytes().to_vec()));
    }
}

/// Options for the overwrite tests: no background thread, the default dirty budget and a
/// ring that half fills only after 256 small commits, so no other trigger checkpoints while
/// the overwrites run; a 32 MiB file (a 4 MiB journal, 1/8 of it) growing in 8 MiB steps (so
/// a checkpoint is worth taking for 256 freed blocks, design.md §11.6).
fn overwrite_opts() -> Options {
    Options {
        cache_bytes: 4 << 20,
        file_initial_bytes: 32 << 20,
        file_grow_step_bytes: 8 << 20,
        journal_bytes: 4 << 20,
        checkpoint_interval: None,
        ..Options::default()
    }
}

/// Appends keys 0, 1, ... in transactions of 1,000 until less than 1/8 of the store is free
/// (appends free almost nothing), then checkpoints twice so nothing freed waits; returns
/// the key count.
fn fill_to_seven_eighths(db: &Db) -> u32 {
    let mut keys = 0u32;
    while db.stats().blocks_free * 8 >= db.stats().blocks_total {
        let tx = db.begin_write().unwrap();
        let mut t = tx.tree("t").unwrap();
        for _ in 0..1000 {
            t.insert(keys.to_be_bytes(), [1u8; 100]).unwrap();
            keys += 1;
        }
        tx.commit().unwrap();
    }
    db.flush().unwrap();
    db.flush().unwrap();
    keys
}

/// `rounds` Immediate commits of 16 overwrites each, at keys spread over `keys`.
fn overwrite_rounds(db: &Db, keys: u32, rounds: u32, value: u8) {
    for round in 0..rounds {
        let tx = db.begin_write().unwrap();
        let mut t = tx.tree("t").unwrap();
        for i in 0..16u32 {
            let k = (round * 16 + i).wrapping_mul(2_654_435_761) % keys;
            t.insert(k.to_be_bytes(), [value; 100]).unwrap();
        }
        tx.commit().unwrap();
    }
}

/// Overwrite commits in a store with under 1/8 of its file free copy more blocks than are
/// free, faster than anything else checkpoints: the blocks they free come back through
/// checkpoints the commits take (design.md §11.6), and the file does not grow (it grew a
/// step before those checkpoints: freed blocks waited for a checkpoint that only the
/// ring filling up or the interval would have taken).
#[test]
fn overwrites_reuse_freed_blocks_instead_of_growing_the_file() {
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("overwrites.arbor");
    let db = store::create(&path, overwrite_opts()).unwrap();
    let keys = fill_to_seven_eighths(&db);
    let before = db.stats();
    let file_len = (!store::in_memory()).then(|| std::fs::metadata(&path).unwrap().len());
    overwrite_rounds(&db, keys, 200, 2);
    let after = db.stats();
    assert_eq!(after.blocks_total, before.blocks_total, "the store grew: {after:?}");
    if let Some(len) = file_len {
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len, "the file grew");
    }
    // The overwrites copied more blocks than were free: reuse, not luck.
    let copied = after.blocks_written - before.blocks_written;
    assert!(copied > before.blocks_free, "{copied} blocks written, {} free", before.blocks_free);
    assert!(after.checkpoints > before.checkpoints, "{after:?}");
    let tx = db.begin_write().unwrap();
    let t = tx.tree("t").unwrap();
    assert_eq!(t.len().unwrap(), u64::from(keys));
    for k in (0..keys).step_by(101) {
        assert!(t.get(k.to_be_bytes()).unwrap().is_some());
    }
    tx.abort().unwrap();
    assert!(db.check().unwrap().is_ok());
}

/// The same overwrites with a snapshot held from before them: every block they free stays
/// unused while the snapshot can reach it (design.md §6), so the store grows instead, takes
/// no checkpoint for space it could not get back, and the snapshot reads the old values.
#[test]
fn overwrites_under_a_held_snapshot_grow_the_store_and_keep_its_blocks() {
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("held.arbor");
    let db = store::create(&path, overwrite_opts()).unwrap();
    let keys = fill_to_seven_eighths(&db);
    let snap = db.snapshot().unwrap();
    let before = db.stats();
    overwrite_rounds(&db, keys, 200, 3);
    let after = db.stats();
    assert!(after.blocks_total > before.blocks_total, "{after:?}");
    assert_eq!(after.checkpoints, before.checkpoints, "checkpoints for pinned blocks");
    assert!(after.pinned_blocks > before.blocks_free, "{after:?}");
    let old = snap.tree("t").unwrap().unwrap();
    for round in (0..200u32).step_by(7) {
        let k = (round * 16).wrapping_mul(2_654_435_761) % keys;
        assert_eq!(
            old.get(k.to_be_bytes()).unwrap().map(Vec::from),
            Some(vec![1u8; 100]),
            "key {k}"
        );
    }
    drop(old);
    drop(snap);
    // Released: the next commits get the space back through checkpoints, not more growth.
    let grown = db.stats().blocks_total;
    overwrite_rounds(&db, keys, 200, 4);
    assert_eq!(db.stats().blocks_total, grown);
    assert!(db.check().unwrap().is_ok());
}
