//! `arbor check` and `arbor info` on healthy and deliberately damaged stores.

mod common;

use std::path::Path;

use arbor_format::superblock::slot_offset;
use arbor_format::{seal_block, AllocIndex, CatalogEntry, ChildPtr, Node};
use common::*;

/// Two trees; the last commit inserts one key into `a`, so a's leaf holding it (and the path
/// to it) exists only in the newest generation: each commit is followed by a checkpoint
/// (`Db::flush`), so the older checkpoint holds everything but the last commit.
fn healthy(path: &Path) {
    build(path, |db| {
        let tx = db.begin_write().unwrap();
        let mut a = tx.tree("a").unwrap();
        for i in 0..2000u32 {
            a.insert(format!("key{i:06}").as_bytes(), [7u8; 40]).unwrap();
        }
        let mut b = tx.tree("b").unwrap();
        for i in 0..50u32 {
            b.insert(i.to_be_bytes(), b"bee").unwrap();
        }
        tx.commit().unwrap();
        db.flush().unwrap();
        let tx = db.begin_write().unwrap();
        tx.tree("a").unwrap().insert(b"key000500x", b"last").unwrap();
        tx.commit().unwrap();
    });
}

fn check(path: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["check", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    arbor(&args)
}

/// The leaf of tree `a` that holds `key`, found by descending from its root.
fn leaf_of(path: &Path, key: &[u8]) -> u64 {
    let (_, items) = catalog(path);
    let mut ptr = items.iter().find(|(n, _, _)| n == b"a").unwrap().1;
    loop {
        let buf = read_block(path, ptr.address());
        let node = Node::decode(&buf).unwrap();
        if node.is_leaf() {
            return ptr.address();
        }
        ptr = node.child(node.child_index(key));
    }
}

#[test]
fn healthy_store_passes() {
    let dir = tempdir();
    let store = dir.path().join("s.arbor");
    healthy(&store);
    let o = check(&store, &[]);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(stdout(&o).contains("no problems found"), "{}", describe(&o));
    let o = check(&store, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["generations"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["generations"][0]["entries"], 2051);
}

/// Flips bytes inside the leaf of tree `a` that holds `key` (re-sealing nothing: a rotten
/// block); returns its address.
fn rot_leaf(path: &Path, key: &[u8]) -> u64 {
    let leaf = leaf_of(path, key);
    let mut buf = read_block(path, leaf);
    for b in &mut buf[2000..2008] {
        *b ^= 0xa5;
    }
    write_block(path, leaf, &buf);
    leaf
}

fn dump_to(path: &Path, out: &Path) -> std::process::Output {
    arbor(&["dump", path.to_str().unwrap(), "-o", out.to_str().unwrap()])
}

#[test]
fn corrupted_tree_block_is_named_and_rolled_back_only_with_rollback() {
    let dir = tempdir();
    let store = dir.path().join("s.arbor");
    healthy(&store);
    let before_last = dir.path().join("before.adump");
    let leaf = rot_leaf(&store, b"key000500x");

    let o = check(&store, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("bad-block at block {leaf}")), "block {leaf} not named:\n{out}");
    assert!(out.contains("open recovers generation"), "{out}");
    let newest = newest_superblock(&store).1.generation();

    // Plain --repair discards nothing: it says what --rollback would lose and writes nothing.
    let bytes = std::fs::read(&store).unwrap();
    let o = check(&store, &["--repair"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let out = stdout(&o);
    let expect = format!("--rollback would discard generation {newest} and return to generation");
    assert!(out.contains(&expect), "{expect:?} missing:\n{out}");
    assert!(out.contains(&format!("tree \"a\": unreadable in generation {newest}")), "{out}");
    assert!(out.contains("2001 entries; "), "a's recorded count missing:\n{out}");
    assert!(out.contains(&format!("tree \"b\": 50 entries in generation {newest}, 50 after")));
    assert!(out.contains("journal: no commit after generation"), "{out}");
    assert!(out.contains("not rolled back") && out.contains("nothing was changed"), "{out}");
    assert!(!out.contains("rolled back: discarded"), "{out}");
    assert!(std::fs::read(&store).unwrap() == bytes, "plain --repair changed the store");
    let o = arbor(&["check", store.to_str().unwrap(), "--rollback"]);
    assert_eq!(o.status.code(), Some(2), "--rollback needs --repair: {}", describe(&o));

    // --repair --rollback prints the loss report first, then rolls back to the older
    // checkpoint, which holds everything but the last commit.
    let o = check(&store, &["--repair", "--rollback"]);
    assert!(o.status.success(), "{}", describe(&o));
    let out = stdout(&o);
    let report = out.find(&format!("rolling back: discarding generation {newest}"));
    let done = out.find("rolled back: discarded generation");
    assert!(report.is_some() && report < done, "loss report not before the rollback:\n{out}");
    assert!(out.contains("tree \"a\": unreadable"), "{out}");
    assert!(out.contains("the journal's end"), "{out}");
    let o = check(&store, &[]);
    assert!(o.status.success(), "{}", describe(&o));
    let o = dump_to(&store, &before_last);
    assert!(o.status.success(), "{}", describe(&o));
    let dump = std::fs::read(&before_last).unwrap();
    let needle = b"key000500x";
    assert!(!dump.windows(needle.len()).any(|w| w == needle), "rollback kept the lost commit");
    assert!(dump.windows(9).any(|w| w == b"key001999"), "rollback lost older data");
    // The store takes commits again after the rollback, and keeps them across a reopen.
    build_on(&store, |db| {
        let tx = db.begin_write().unwrap();
        tx.tree("b").unwrap().insert(b"after", b"rollback").unwrap();
        tx.commit().unwrap();
    });
    let o = arbor(&["get", store.to_str().unwrap(), "b", "after"]);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(check(&store, &[]).status.success());
}

/// `stat` and `dump` on a store whose reads hit a damaged block, and on one whose open
/// fails: exit 2 naming the block and `arbor check`; `dump -o` leaves no file.
#[test]
fn stat_and_dump_name_the_damaged_block() {
    let dir = tempdir();
    let store = dir.path().join("s.arbor");
    let s = store.to_str().unwrap();
    healthy(&store);
    let out_file = dir.path().join("out.adump");
    let leaf = rot_leaf(&store, b"key000500x");
    let names_it = |o: &std::process::Output, block: u64| {
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(2), "{}", describe(o));
        assert!(err.contains(&format!("block {block}")), "block {block} not named: {err}");
        assert!(err.contains(&format!("arbor check {s}")), "no hint: {err}");
    };
    let o = arbor(&["stat", s]);
    names_it(&o, leaf);
    assert!(stdout(&o).contains("(catalog)"), "stat still prints its figures: {}", describe(&o));
    names_it(&arbor(&["stat", s, "--json"]), leaf);
    names_it(&dump_to(&store, &out_file), leaf);
    assert!(!out_file.exists(), "a failed dump left its output");

    // A damaged catalog: open itself fails.
    let (catalog_addr, _) = catalog(&store);
    let mut buf = read_block(&store, catalog_addr);
    buf[100] ^= 0xff;
    write_block(&store, catalog_addr, &buf);
    names_it(&arbor(&["stat", s]), catalog_addr);
    names_it(&dump_to(&store, &out_file), catalog_addr);
    assert!(!out_file.exists(), "a failed dump left its output");
    names_it(&arbor(&["get", s, "a", "key000001"]), catalog_addr);
}

#[test]
fn torn_superblock_slot_is_reported_and_info_still_works() {
    let dir = tempdir();
    let store = dir.path().join("s.arbor");
    healthy(&store);
    let (slot, sb) = newest_superblock(&store);
    // Tear the newest copy: its second half never reached the disk.
    write_at(&store, slot_offset(slot) + 2048, &[0xee; 2048]);

    let s = store.to_str().unwrap();
    let o = arbor(&["info", s]);
    assert!(o.status.success(), "{}", describe(&o));
    let out = stdout(&o);
    assert!(out.contains("INVALID"), "{out}");
    assert!(out.contains(&format!("valid, gen {}", sb.generation())), "{out}");
    let v: serde_json::Value =
        serde_json::from_slice(&arbor(&["info", s, "--json"]).stdout).unwrap();
    assert_eq!(v["slots"][slot as usize]["state"], "invalid", "{v}");
    assert_eq!(v["newest_generation"], sb.generation());
    assert!(v["space"]["used_blocks"].as_u64().unwrap() > 0, "{v}");

    let o = check(&store, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let out = stdout(&o);
    let expect = format!("superblock at block {}: slot {slot}", slot_offset(slot) / 4096);
    assert!(out.contains(&expect), "{expect:?} missing:\n{out}");

    let o = check(&store, &["--repair"]);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(stdout(&o).contains(&format!("rewrote superblock slot {slot}")), "{}", describe(&o));
    assert!(check(&store, &[]).status.success());

    // Destroy a whole slot (all four are needed for nothing): info still reads the others.
    write_at(&store, slot_offset(slot), &[0xff; 4096]);
    let o = arbor(&["info", s]);
    assert!(o.status.success(), "{}", describe(&o));
}

/// Marks free block `victim` allocated in the newest generation's bitmap, re-sealing the
/// chunk, the index above it and the superblock (a consistent but wrong bitmap).
fn leak_block(path: &Path) -> u64 {
    let (slot, mut sb) = newest_superblock(path);
    let root = sb.alloc_root();
    let mut index = read_block(path, root.address());
    let chunk_ptr = AllocIndex::decode(&index[..]).unwrap().child(0);
    let mut chunk = read_block(path, chunk_ptr.address());
    let victim = sb.block_count() - 3;
    let byte = 64 + (victim / 8) as usize;
    assert_eq!(chunk[byte] & (1 << (victim % 8)), 0, "victim is free");
    chunk[byte] |= 1 << (victim % 8);
    let crc = seal_block(&mut chunk);
    write_block(path, chunk_ptr.address(), &chunk);
    let new_ptr = ChildPtr::new(chunk_ptr.address(), chunk_ptr.generation(), crc);
    index[64..88].copy_from_slice(new_ptr.as_bytes());
    let crc = seal_block(&mut index);
    write_block(path, root.address(), &index);
    sb.set_alloc_root(ChildPtr::new(root.address(), root.generation(), crc));
    write_superblock(path, slot, &sb);
    victim
}

#[test]
fn leaked_block_is_named_and_freed_by_repair() {
    let dir = tempdir();
    let store = dir.path().join("s.arbor");
    healthy(&store);
    let victim = leak_block(&store);
    let o = check(&store, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("leaked at block {victim}")), "{out}");
    assert!(!out.contains("bad-block"), "{out}");

    let o = check(&store, &["--repair"]);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(stdout(&o).contains("freed 1 leaked block"), "{}", describe(&o));
    let o = check(&store, &[]);
    assert!(o.status.success(), "{}", describe(&o));
}

#[test]
fn double_used_block_is_named() {
    let dir = tempdir();
    let store = dir.path().join("s.arbor");
    healthy(&store);
    // Point tree b's catalog entry at tree a's root: every block of a is used twice, and b's
    // own blocks leak.
    let (addr, items) = catalog(&store);
    let (_, a_root, _) = items.iter().find(|(n, _, _)| n == b"a").unwrap().clone();
    let (_, b_root, b_range) = items.iter().find(|(n, _, _)| n == b"b").unwrap().clone();
    let mut buf = read_block(&store, addr);
    let (_, _, a_range) = items.iter().find(|(n, _, _)| n == b"a").unwrap();
    let a = CatalogEntry::decode(&buf[a_range.clone()]).unwrap();
    let b = CatalogEntry::decode(&buf[b_range.clone()]).unwrap();
    // b keeps its id; its root and entry count become a's.
    let edited = CatalogEntry::new(b.id(), a_root, a.entries());
    buf[b_range].copy_from_slice(edited.as_bytes());
    reseal_catalog(&store, addr, buf);

    let o = check(&store, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let problems = v["problems"].as_array().unwrap();
    let has = |kind: &str, block: u64| {
        problems.iter().any(|p| p["kind"] == kind && p["block"].as_u64() == Some(block))
    };
    assert!(has("double-used", a_root.address()), "{v:#}");
    assert!(has("leaked", b_root.address()), "{v:#}");
    // Data damage in the newest generation only: plain --repair refuses to roll back (and
    // never frees the "leaked" blocks of a damaged generation); --rollback rolls back.
    let o = check(&store, &["--repair"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(stdout(&o).contains("not rolled back"), "{}", describe(&o));
    assert!(!stdout(&o).contains("rebuilt the free-space map"), "{}", describe(&o));
    let o = check(&store, &["--repair", "--rollback"]);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(stdout(&o).contains("rolled back: discarded generation"), "{}", describe(&o));
    assert!(!stdout(&o).contains("rebuilt the free-space map"), "{}", describe(&o));
}

/// `check --repair` on a store whose deleted tree still has orphaned subtrees (owned until
/// later commits free them) and one leaked block: the repair frees the leak and only the leak.
/// Walking only the catalog, it used to free the orphans' blocks too and then panic in its
/// own commit, freeing them a second time (issue 12).
#[test]
fn repair_with_orphaned_subtrees_frees_only_the_leak() {
    let dir = tempdir();
    let store = dir.path().join("s.arbor");
    build(&store, |db| {
        let tx = db.begin_write().unwrap();
        let mut keep = tx.tree("keep").unwrap();
        for i in 0..300u32 {
            keep.insert(format!("key{i:06}").as_bytes(), i.to_le_bytes()).unwrap();
        }
        arbor_testkit::orphan_a_big_tree(db, tx);
    });
    let victim = leak_block(&store);
    let o = check(&store, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(stdout(&o).contains(&format!("leaked at block {victim}")), "{}", describe(&o));

    let o = check(&store, &["--repair"]);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(stdout(&o).contains("freed 1 leaked block"), "{}", describe(&o));
    let o = check(&store, &[]);
    assert!(o.status.success(), "{}", describe(&o));
    let db = arbor::Db::open(&store, small_opts()).unwrap();
    assert!(db.stats().orphan_subtrees > 0, "the repair left the orphans to later commits");
    let tx = db.begin_write().unwrap();
    assert_eq!(tx.tree_names().unwrap(), vec!["keep".to_string()]);
    let keep = tx.tree("keep").unwrap();
    assert_eq!(keep.len().unwrap(), 300);
    for i in 0..300u32 {
        let got = keep.get(format!("key{i:06}").as_bytes()).unwrap();
        assert_eq!(got, Some(i.to_le_bytes().to_vec()), "key {i}");
    }
}

/// A store whose last commits are only in the journal (a crash before any checkpoint):
/// `check` says how many commits open would replay, in text and JSON.
#[test]
fn check_reports_the_journal_open_would_replay() {
    let dir = tempdir();
    let path = dir.path().join("s.arbor");
    let dev = arbor::io::SimDevice::new(32 << 20, 4096, 9);
    let opts = arbor::Options { checkpoint_interval: None, ..arbor_testkit::roomy_opts() };
    let db = arbor::Db::create_on(Box::new(dev.clone()), opts).unwrap();
    for i in 0..5u32 {
        let tx = db.begin_write().unwrap();
        tx.tree("t").unwrap().insert(i.to_be_bytes(), b"v").unwrap();
        tx.commit().unwrap();
    }
    let image = dev.crash();
    drop(db);
    let mut buf = arbor::AlignedBuf::zeroed(32 << 20, 4096);
    arbor::io::BlockDevice::read_at(&image, 0, &mut buf).unwrap();
    std::fs::write(&path, &buf[..]).unwrap();
    let out = check(&path, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout(&out).contains("journal: 5 commit(s) past the checkpoint"),
        "{}",
        describe(&out)
    );
    let out = check(&path, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["journal"]["records"], 5, "{v}");
    assert_eq!(v["journal"]["dropped"], 0, "{v}");
}
