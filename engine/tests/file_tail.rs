//! A file's growth tail (design.md §10.16): a checkpoint after more than one growth step cuts
//! the free blocks past the last block in use, and open accepts a superblock that names more
//! blocks than the file holds when none of them is in use.

mod common;

use arbor::{Db, Error, Options};
use arbor_testkit::store::{self, needs_real_file};

const BLOCK: u64 = 4096;

/// 4 MiB growth steps, a 1 MiB journal, no background checkpoints.
fn opts() -> Options {
    Options {
        cache_bytes: 8 << 20,
        file_grow_step_bytes: 4 << 20,
        journal_bytes: 1 << 20,
        checkpoint_interval: None,
        ..Options::default()
    }
}

fn value(i: u64) -> Vec<u8> {
    vec![(i % 251) as u8; 150]
}

/// Inserts keys `from..to` (hashed order) in one transaction.
fn load(db: &Db, from: u64, to: u64) {
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("t").unwrap();
    for i in from..to {
        t.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes(), value(i)).unwrap();
    }
    tx.commit().unwrap();
}

fn assert_keys(db: &Db, to: u64) {
    let snap = db.snapshot().unwrap();
    let t = snap.tree("t").unwrap().expect("tree t");
    assert_eq!(t.len().unwrap(), to);
    for i in (0..to).step_by(97) {
        let k = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes();
        assert_eq!(t.get(k).unwrap().expect("key").to_vec(), value(i), "key {i}");
    }
}

/// A load of ~11 MiB in one transaction grows the file several times (4 MiB steps at most);
/// its commit cuts what the last growth left unused, so the store ends within its reserve of
/// the last block in use (without the cut: 842 blocks free, 3.3 MiB). The store reopens,
/// grows again for later commits and checks clean.
#[test]
fn a_bulk_load_leaves_no_growth_tail() {
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("tail.arbor");
    let db = store::create(&path, opts()).unwrap();
    load(&db, 0, 50_000);
    let st = db.stats();
    // The reserve (64 blocks + 4 per bitmap chunk) and holes the load left inside.
    assert!(st.blocks_free <= 160, "{} blocks free after the load: {st:?}", st.blocks_free);
    if !store::in_memory() {
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), st.blocks_total * BLOCK, "the file is the store");
        use std::os::unix::fs::MetadataExt;
        // The filesystem may count a block or two of its own (an extent tree block).
        let on_disk = meta.blocks() * 512;
        assert!(on_disk <= meta.len() + 16 * BLOCK, "{on_disk} bytes on disk, {} long", meta.len());
    }
    assert!(db.check().unwrap().is_ok());
    drop(db);
    let db = store::open(&path, opts()).unwrap();
    assert_keys(&db, 50_000);
    // Small commits grow the file by a step again, and keep it.
    for round in 0..20 {
        load(&db, 50_000 + round * 100, 50_000 + (round + 1) * 100);
    }
    let grown = db.stats();
    assert!(grown.blocks_total > st.blocks_total, "{grown:?}");
    db.flush().unwrap();
    assert_eq!(db.stats().blocks_total, grown.blocks_total, "one step of growth is kept");
    drop(db);
    let db = store::open(&path, opts()).unwrap();
    assert_keys(&db, 52_000);
    assert!(db.check().unwrap().is_ok());
}

/// A file cut past its last block in use — what a crash leaves when a checkpoint cut the
/// tail before its superblock was durable — opens, at the cut length, and checks clean; a
/// file cut inside the blocks in use is `Corrupt`, never a panic.
#[test]
fn open_accepts_a_file_cut_past_its_last_block_in_use() {
    if needs_real_file("open_accepts_a_file_cut_past_its_last_block_in_use", "set_len") {
        return;
    }
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("cut.arbor");
    let big = Options { file_initial_bytes: 16 << 20, ..opts() };
    let db = store::create(&path, big.clone()).unwrap();
    load(&db, 0, 500);
    drop(db);
    let set_len = |len: u64| {
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len).unwrap();
    };
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 16 << 20);
    // The journal is the first MiB; 500 small entries use a few blocks after it.
    set_len(4 << 20);
    let db = store::open(&path, big.clone()).unwrap();
    assert_eq!(db.stats().blocks_total, (4 << 20) / BLOCK);
    assert_keys(&db, 500);
    assert!(db.check().unwrap().is_ok());
    load(&db, 500, 1000);
    drop(db);
    let db = store::open(&path, big.clone()).unwrap();
    assert_keys(&db, 1000);
    drop(db);
    set_len((1 << 20) + 8 * BLOCK);
    match store::open(&path, big) {
        // Named either way: a block in use past the end, or the allocator's own block
        // there that open could not read.
        Err(Error::Corrupt { .. }) => {}
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("a store cut inside its blocks in use opened"),
    }
}
