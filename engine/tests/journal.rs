//! The commit journal (design.md §11): twin journal blocks, the torn-tail rule, no silent
//! rollback after damage to a checkpoint, wrap-around under a held snapshot with mixed
//! durabilities and large transactions.

mod common;

use arbor::io::{BlockDevice, SimDevice};
use arbor::{AlignedBuf, Db, Durability, Error, Options};
use arbor_format::header::parse_header;
use arbor_format::BlockKind;
use common::{dump, small_opts, Model, Rng};

/// Checkpoints only when the test (or a full ring) asks.
fn opts() -> Options {
    Options { checkpoint_interval: None, ..small_opts() }
}

/// The journal's first block on a 4 KiB store: right after the 256 KiB superblock area.
const JOURNAL_START: u64 = 64;

/// Byte offset of copy `copy` of the journal block with lsn `lsn` (the ring has `slots`).
fn journal_copy(lsn: u64, slots: u64, copy: u64) -> u64 {
    (JOURNAL_START + 2 * (lsn % slots) + copy) * 4096
}

/// Slots of the ring `opts()` gives a store on a device of `device_bytes`: 1/8 of it.
fn slots_of(device_bytes: u64) -> u64 {
    device_bytes / 8 / 8192
}

/// Ruins 4 KiB at `offset` (every byte changed, so no copy there verifies).
fn ruin(dev: &SimDevice, offset: u64) {
    let mut buf = AlignedBuf::zeroed(4096, 4096);
    dev.read_at(offset, &mut buf).unwrap();
    for b in buf.iter_mut() {
        *b ^= 0x5a;
    }
    dev.write_at(offset, &buf).unwrap();
}

/// A new store and `n` Immediate single-insert commits (no checkpoint after create): commit
/// i (from 1) is the only record of the batch with lsn i. Returns the device and the model
/// after each commit.
fn journaled_commits(n: u32) -> (SimDevice, Vec<Model>) {
    let dev = SimDevice::new(32 << 20, 4096, 11);
    let db = Db::create_on(Box::new(dev.clone()), opts()).unwrap();
    let mut models = vec![Model::new()];
    let checkpoints = db.stats().checkpoints; // create's
    for i in 1..=n {
        let tx = db.begin_write().unwrap();
        tx.tree("t").unwrap().insert(i.to_be_bytes(), format!("value {i}")).unwrap();
        assert!(tx.commit().unwrap().durable);
        let mut m = models.last().cloned().unwrap();
        m.entry("t".into())
            .or_default()
            .insert(i.to_be_bytes().to_vec(), format!("value {i}").into());
        models.push(m);
    }
    assert_eq!(db.stats().checkpoints, checkpoints, "the commits are only in the journal");
    assert_eq!(db.stats().journal_batches, u64::from(n));
    let image = dev.crash();
    drop(db);
    (image, models)
}

/// One damaged copy of any journal block, of the last batch or an earlier one: the commit
/// is recovered from the twin.
#[test]
fn one_damaged_copy_of_a_journal_block_is_read_from_its_twin() {
    let slots = slots_of(32 << 20);
    for (lsn, copy) in [(1, 0), (3, 1), (5, 0), (5, 1)] {
        let (dev, models) = journaled_commits(5);
        ruin(&dev, journal_copy(lsn, slots, copy));
        let db = Db::open_on(Box::new(dev), opts()).unwrap();
        assert_eq!(dump(&db), models[5], "lsn {lsn} copy {copy}");
        assert_eq!(db.stats().records_replayed, 5);
    }
}

/// Both copies of a block of an earlier batch damaged, later batches intact: acknowledged
/// history is damaged, so open refuses with `Corrupt` naming the block (never a silent drop).
#[test]
fn both_copies_of_an_earlier_batch_damaged_is_corrupt() {
    let slots = slots_of(32 << 20);
    let (dev, _) = journaled_commits(5);
    ruin(&dev, journal_copy(3, slots, 0));
    ruin(&dev, journal_copy(3, slots, 1));
    // The offline check says so too: a journal problem naming the block, and open's error.
    let report = arbor::check::check_device(Box::new(dev.clone()), &mut |_| {}).unwrap();
    assert!(!report.is_ok());
    let journal = report.findings().find(|p| p.kind == arbor::check::ProblemKind::Journal);
    assert_eq!(journal.map(|p| p.addr), Some(JOURNAL_START + 2 * 3), "{report:?}");
    assert!(report.open_error.is_some(), "{report:?}");
    match Db::open_on(Box::new(dev), opts()) {
        Err(Error::Corrupt { addr, reason }) => {
            assert_eq!(addr, JOURNAL_START + 2 * 3, "{reason}");
            assert!(reason.contains("later flush batch"), "{reason}");
        }
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(db) => panic!("opened with {:?}", dump(&db)),
    }
}

/// Both copies of the last batch's block gone (a torn last write, never acknowledged as far
/// as recovery can tell): dropped, open succeeds at the commit before, and the store goes on.
#[test]
fn a_torn_last_batch_is_dropped() {
    let slots = slots_of(32 << 20);
    let (dev, models) = journaled_commits(5);
    ruin(&dev, journal_copy(5, slots, 0));
    ruin(&dev, journal_copy(5, slots, 1));
    let db = Db::open_on(Box::new(dev.clone()), opts()).unwrap();
    assert_eq!(dump(&db), models[4]);
    let tx = db.begin_write().unwrap();
    tx.tree("t").unwrap().insert(b"after", b"x").unwrap();
    tx.commit().unwrap();
    let image = dev.crash();
    drop(db);
    let db = Db::open_on(Box::new(image), opts()).unwrap();
    let mut want = models[4].clone();
    want.get_mut("t").unwrap().insert(b"after".to_vec(), b"x".to_vec());
    assert_eq!(dump(&db), want);
    assert!(db.check().unwrap().is_ok());
}

/// Batches in flight together (design.md §11.4): the last batch (lsn 5) was written while
/// the one before it (lsn 4) was still in flight, and lsn 4's write tore. Neither was
/// acknowledged (a batch's commits wait for every batch before it), and lsn 5's
/// `flushed_below` says lsn 4 was never known flushed: both are dropped. The same lsn 5
/// written after lsn 4's flush ended would make lsn 4's damage `Corrupt`.
#[test]
fn a_torn_batch_and_one_in_flight_with_it_are_dropped() {
    let slots = slots_of(32 << 20);
    for flushed_below in [4u64, 5] {
        let (dev, models) = journaled_commits(5);
        ruin(&dev, journal_copy(4, slots, 0));
        ruin(&dev, journal_copy(4, slots, 1));
        for copy in 0..2 {
            let offset = journal_copy(5, slots, copy);
            let mut block = AlignedBuf::zeroed(4096, 4096);
            dev.read_at(offset, &mut block).unwrap();
            assert_eq!(block[120..128], 5u64.to_le_bytes(), "flushed_below at offset 120");
            block[120..128].copy_from_slice(&flushed_below.to_le_bytes());
            arbor_format::header::seal_block(&mut block);
            dev.write_at(offset, &block).unwrap();
        }
        match (flushed_below, Db::open_on(Box::new(dev), opts())) {
            (4, Ok(db)) => {
                assert_eq!(dump(&db), models[3]);
                assert!(db.check().unwrap().is_ok());
            }
            (5, Err(Error::Corrupt { addr, .. })) => assert_eq!(addr, JOURNAL_START + 2 * 4),
            (_, Err(e)) => panic!("flushed below {flushed_below}: {e}"),
            (_, Ok(db)) => panic!("flushed below {flushed_below}: opened {:?}", dump(&db)),
        }
    }
}

/// Eight committing threads with four batches allowed in flight (design.md §11.4): after a
/// crash every acknowledged commit is there, in a state that is some prefix of commit order.
#[test]
fn batches_in_flight_together_lose_no_acknowledged_commit() {
    let dev = SimDevice::new(32 << 20, 4096, 23);
    let o = Options { journal_batches_in_flight: 4, ..opts() };
    let db = Db::create_on(Box::new(dev.clone()), o.clone()).unwrap();
    std::thread::scope(|s| {
        for t in 0..8u32 {
            let db = &db;
            s.spawn(move || {
                for i in 0..40u32 {
                    let tx = db.begin_write().unwrap();
                    tx.tree("t").unwrap().insert(t.to_be_bytes(), i.to_be_bytes()).unwrap();
                    assert!(tx.commit().unwrap().durable);
                }
            });
        }
    });
    let image = dev.crash();
    drop(db);
    let db = Db::open_on(Box::new(image), o).unwrap();
    let got = dump(&db);
    for t in 0..8u32 {
        assert_eq!(got["t"].get(&t.to_be_bytes()[..]), Some(&39u32.to_be_bytes().to_vec()));
    }
    assert!(db.check().unwrap().is_ok());
}

/// The new user's scenario of the journal issue: a bulk load in one transaction, a clean
/// close, one flipped byte inside one leaf. Open must not return an empty store (it used to
/// fall back silently): reading the damaged leaf gives `Corrupt`, every other entry reads.
#[test]
fn a_flipped_byte_in_a_leaf_is_corrupt_not_an_empty_store() {
    let dev = SimDevice::new(64 << 20, 4096, 5);
    let db = Db::create_on(Box::new(dev.clone()), opts()).unwrap();
    let n = 50_000u32;
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("t").unwrap();
    for i in 0..n {
        t.insert(i.to_be_bytes(), [i as u8; 40]).unwrap();
    }
    drop(t);
    tx.commit().unwrap();
    drop(db);
    let image = dev.crash();
    // A leaf of tree "t" in the middle of the store's blocks.
    let leaves: Vec<u64> = (0..image.len_bytes() / 4096)
        .filter(|&b| {
            let mut buf = AlignedBuf::zeroed(4096, 4096);
            image.read_at(b * 4096, &mut buf).unwrap();
            parse_header(&buf).is_ok_and(|h| h.kind() == Ok(BlockKind::Leaf) && h.owner() >= 16)
        })
        .collect();
    assert!(leaves.len() > 100, "{} leaves", leaves.len());
    let victim = leaves[leaves.len() / 2];
    image.flip_bit(victim * 4096 + 2000, 3);
    let db = Db::open_on(Box::new(image), opts()).expect("open does not fall back or fail");
    let tx = db.begin_write().unwrap();
    let t = tx.tree("t").unwrap();
    assert_eq!(t.len().unwrap(), u64::from(n), "the tree is there, whole");
    let mut corrupt = 0;
    for i in 0..n {
        match t.get(i.to_be_bytes()) {
            Ok(v) => assert_eq!(v, Some(vec![i as u8; 40]), "key {i}"),
            Err(Error::Corrupt { addr, .. }) => {
                assert_eq!(addr, victim);
                corrupt += 1;
            }
            Err(e) => panic!("key {i}: {e}"),
        }
    }
    assert!(corrupt > 0 && corrupt < 200, "{corrupt} keys behind the damaged leaf");
    drop(t);
    drop(tx);
    assert!(!db.check().unwrap().is_ok(), "check names the damaged block");
}

/// A small ring wraps many times under mixed durabilities, large transactions (committed
/// through checkpoints) between journaled ones, and a snapshot held across the checkpoints;
/// after a crash, the store holds the last acknowledged state (order kept).
#[test]
fn the_ring_wraps_under_a_held_snapshot_with_large_transactions_between() {
    let dev = SimDevice::new(16 << 20, 4096, 8);
    let o = Options { journal_bytes: 64 << 10, journal_record_max: 2048, ..opts() };
    let db = Db::create_on(Box::new(dev.clone()), o.clone()).unwrap();
    let mut rng = Rng(77);
    let mut model = Model::new();
    let mut snap_model = None;
    let mut snap = None;
    // The states from the last acknowledged (durable) commit on.
    let mut since_durable = vec![Model::new()];
    for n in 0..600u32 {
        let mut tx = db.begin_write().unwrap();
        let durability =
            [Durability::Immediate, Durability::Eventual, Durability::None][rng.below(3) as usize];
        tx.set_durability(durability);
        let large = n % 50 == 25;
        let count = if large { 60 } else { 1 + rng.below(4) };
        let mut t = tx.tree("t").unwrap();
        let m = model.entry("t".into()).or_default();
        for _ in 0..count {
            let k = rng.below(400).to_be_bytes().to_vec();
            let v = rng.bytes(if large { 100 } else { 30 });
            t.insert(&k, &v).unwrap();
            m.insert(k, v);
        }
        drop(t);
        if tx.commit().unwrap().durable {
            since_durable.clear();
        }
        since_durable.push(model.clone());
        if n == 10 {
            snap = Some(db.snapshot().unwrap());
            snap_model = Some(model.clone());
        }
    }
    let s = db.stats();
    let slots = (64 << 10) / 8192;
    assert!(s.journal_blocks_written / 2 > 5 * slots, "the ring wrapped: {s:?}");
    assert!(s.checkpoints >= 12, "large transactions and a full ring checkpoint: {s:?}");
    // The snapshot reads its commit, or was expired by the bound: never other data.
    match common::snap_dump(snap.as_ref().unwrap()) {
        Ok(got) => assert_eq!(Some(got), snap_model),
        Err(Error::SnapshotExpired { .. }) => {}
        Err(e) => panic!("snapshot: {e}"),
    }
    let image = dev.crash();
    drop(snap);
    drop(db);
    let db = Db::open_on(Box::new(image), o).unwrap();
    let got = dump(&db);
    assert!(since_durable.contains(&got), "recovered state is not at or after the last ack");
    assert!(db.check().unwrap().is_ok());
}

/// An open that fails part-way — a read error while it replays, or while its checkpoint
/// runs — changes nothing the next open sees: that one replays every record (found by the
/// simulator: the failed open's handle checkpointed on close, recording the half-replayed
/// state as whole and the journal's end as its replay start).
#[test]
fn an_open_that_fails_during_replay_loses_nothing() {
    let dev = SimDevice::new(32 << 20, 4096, 21);
    let db = Db::create_on(Box::new(dev.clone()), opts()).unwrap();
    let mut model = Model::new();
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("t").unwrap();
    for i in 0..3000u32 {
        t.insert(i.to_be_bytes(), [1; 50]).unwrap();
        model.entry("t".into()).or_default().insert(i.to_be_bytes().to_vec(), vec![1; 50]);
    }
    drop(t);
    tx.commit().unwrap();
    db.flush().unwrap();
    for i in (0..3000u32).step_by(100) {
        let tx = db.begin_write().unwrap();
        tx.tree("t").unwrap().insert(i.to_be_bytes(), [2; 50]).unwrap();
        tx.commit().unwrap();
        model.get_mut("t").unwrap().insert(i.to_be_bytes().to_vec(), vec![2; 50]);
    }
    let image = dev.crash();
    drop(db);
    // Replay reads the leaves of the keys it changes, in key order: an unreadable last leaf
    // fails it after it applied most records.
    let last_leaf = (0..image.len_bytes() / 4096)
        .filter(|&b| {
            let mut buf = AlignedBuf::zeroed(4096, 4096);
            image.read_at(b * 4096, &mut buf).unwrap();
            arbor_format::Node::decode(&buf).is_ok_and(|n| {
                n.is_leaf()
                    && n.header().owner() >= 16
                    && n.key(0) <= &2900u32.to_be_bytes()[..]
                    && &2900u32.to_be_bytes()[..] <= n.key(n.len() - 1)
            })
        })
        .max()
        .expect("the leaf of key 2900");
    image.fail_reads_at(last_leaf * 4096..last_leaf * 4096 + 4096);
    match Db::open_on(Box::new(image.clone()), opts()) {
        Err(Error::Io { .. }) => {}
        other => panic!("open with an unreadable leaf: {:?}", other.map(|_| ())),
    }
    image.clear_faults();
    let db = Db::open_on(Box::new(image.crash()), opts()).unwrap();
    assert_eq!(dump(&db), model);
    assert_eq!(db.stats().records_replayed, 30);
}

/// The background thread (design.md §11.6): with records pending it checkpoints every
/// `checkpoint_interval`, and it flushes `Eventual` records once `eventual_interval` has
/// passed, with no further commit.
#[test]
fn the_background_thread_checkpoints_and_flushes_eventual_records() {
    use std::time::{Duration, Instant};
    let dev = SimDevice::new(32 << 20, 4096, 31);
    let o = Options {
        checkpoint_interval: Some(Duration::from_millis(30)),
        eventual_interval: Duration::from_millis(10),
        ..opts()
    };
    let db = Db::create_on(Box::new(dev.clone()), o).unwrap();
    let wait_for = |what: &str, done: &dyn Fn(&arbor::Stats) -> bool| {
        let start = Instant::now();
        while !done(&db.stats()) {
            assert!(start.elapsed() < Duration::from_secs(20), "no {what}: {:?}", db.stats());
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let checkpoints = db.stats().checkpoints;
    let mut tx = db.begin_write().unwrap();
    tx.set_durability(Durability::Eventual);
    tx.tree("t").unwrap().insert(b"k", b"v").unwrap();
    let info = tx.commit().unwrap();
    wait_for("journal flush of the Eventual record", &|s| s.journal_batches >= 1);
    wait_for("background checkpoint", &|s| s.checkpoints > checkpoints);
    assert!(info.seq > 0);
    // Both made the commit durable: a crash now keeps it.
    let image = dev.crash();
    let db2 = Db::open_on(Box::new(image), opts()).unwrap();
    let tx = db2.begin_write().unwrap();
    assert_eq!(tx.tree("t").unwrap().get(b"k").unwrap(), Some(b"v".to_vec()));
}

/// Stores of older layouts — version 1 (before the journal) and version 2 (node slots
/// without key hints) — are refused with an error naming their version, never misread
/// (design.md §11.1, §12.4).
#[test]
fn older_stores_are_refused_by_version() {
    use arbor_format::constants::FORMAT_VERSION;
    use arbor_format::superblock::{slot_offset, Superblock};
    assert_eq!(FORMAT_VERSION, 3);
    for version in [1u16, 2] {
        let dev = SimDevice::new(8 << 20, 4096, 41);
        drop(Db::create_on(Box::new(dev.clone()), opts()).unwrap());
        let image = dev.crash();
        for slot in 0..4u8 {
            let mut buf = AlignedBuf::zeroed(4096, 4096);
            image.read_at(slot_offset(slot), &mut buf).unwrap();
            let Ok(mut sb) = Superblock::decode_slot(&buf, slot) else { continue };
            sb.set_version(version);
            if version == 1 {
                // What version 1 wrote: no journal fields (they were reserved, zero).
                sb.set_replay_lsn(0);
                sb.set_checkpoint_seq(0);
                let bytes = bytemuck::bytes_of_mut(&mut sb);
                bytes[184..200].fill(0);
            }
            sb.seal(slot);
            buf[..4096].copy_from_slice(sb.encode());
            image.write_at(slot_offset(slot), &buf).unwrap();
        }
        match Db::open_on(Box::new(image), opts()) {
            Err(e @ Error::UnsupportedVersion { found, supported: 3 }) if found == version => {
                assert!(e.to_string().contains(&format!("version {version}")), "{e}");
            }
            other => panic!(
                "version {version}: expected UnsupportedVersion, got {:?}",
                other.map(|_| ())
            ),
        }
    }
}

/// A lost write of a large transaction's checkpoint superblock (a device acknowledging what
/// it never stored) must not let replay from the older checkpoint apply the next commit over
/// the large one: the result is a state that was committed (here the one before the large
/// transaction), never one that skips it (found by the simulator: the covered marker record
/// had been dropped unwritten).
#[test]
fn a_lost_checkpoint_superblock_never_yields_a_state_that_skips_a_commit() {
    use arbor_format::constants::SUPERBLOCK_AREA_BYTES;
    let dev = SimDevice::new(32 << 20, 4096, 51);
    let o = Options { journal_record_max: 2048, ..opts() };
    let db = Db::create_on(Box::new(dev.clone()), o.clone()).unwrap();
    let put = |key: &[u8], len: usize| {
        let tx = db.begin_write().unwrap();
        tx.tree("t").unwrap().insert(key, vec![7u8; len]).unwrap();
        assert!(tx.commit().unwrap().durable);
    };
    put(b"one", 10);
    db.flush().unwrap();
    let mut old_area = AlignedBuf::zeroed(SUPERBLOCK_AREA_BYTES as usize, 4096);
    dev.read_at(0, &mut old_area).unwrap();
    put(b"large", 5000); // over the record limit: committed by a checkpoint
    put(b"three", 10); // journaled after it
    let image = dev.crash();
    drop(db);
    image.write_at(0, &old_area).unwrap(); // the large commit's superblock writes were lost
    let got = match Db::open_on(Box::new(image), o) {
        Ok(db) => dump(&db),
        Err(Error::Corrupt { .. }) => return,
        Err(e) => panic!("open: {e}"),
    };
    let keys: Vec<&[u8]> = got["t"].keys().map(|k| k.as_slice()).collect();
    assert_ne!(keys, [&b"one"[..], b"three"], "replay applied a commit over a lost one");
    assert!(keys == [&b"one"[..]] || keys == [&b"large"[..], b"one", b"three"], "{keys:?}");
}

/// A checkpoint taken while open replays the journal (here after every replayed commit: the
/// dirty budget is one byte) must record a replay start that matches the state it froze.
/// A power cut at any point of that open, then a plain reopen, must give every commit back
/// — never apply a record twice (found by the simulator: a record that deletes a tree was
/// in the checkpoint's state but replayed again, "no tree with id 26").
#[test]
fn a_power_cut_while_open_replays_never_replays_a_record_twice() {
    let dev = SimDevice::new(8 << 20, 4096, 61);
    let db = Db::create_on(Box::new(dev.clone()), opts()).unwrap();
    let commit = |f: &dyn Fn(&arbor::WriteTxn<'_>)| {
        let tx = db.begin_write().unwrap();
        f(&tx);
        tx.commit().unwrap();
    };
    commit(&|tx| {
        for i in 0..20u32 {
            tx.tree("a").unwrap().insert(i.to_be_bytes(), b"a0").unwrap();
            tx.tree("b").unwrap().insert(i.to_be_bytes(), b"b0").unwrap();
        }
    });
    db.flush().unwrap();
    // Journaled only: a tree deleted and made again, then deleted, then another made.
    commit(&|tx| {
        tx.delete_tree("a").unwrap();
        tx.tree("a").unwrap().insert(b"x", b"a1").unwrap();
    });
    commit(&|tx| {
        tx.tree("b").unwrap().insert(b"y", b"b1").unwrap();
        tx.delete_tree("a").unwrap();
    });
    commit(&|tx| {
        tx.tree("c").unwrap().insert(b"z", b"c1").unwrap();
    });
    let base = dev.crash();
    drop(db);
    let expect = |db: &Db, at: u64| {
        let snap = db.snapshot().unwrap();
        assert!(snap.tree("a").unwrap().is_none(), "cut at {at}: tree a is back");
        let b = snap.tree("b").unwrap().unwrap();
        assert_eq!(
            (b.len().unwrap(), b.get(b"y").unwrap().unwrap().to_vec()),
            (21, b"b1".to_vec())
        );
        assert_eq!(snap.tree("c").unwrap().unwrap().get(b"z").unwrap().unwrap(), b"c1");
        assert!(db.check().unwrap().is_ok(), "cut at {at}: check");
    };
    let replaying = || Options { dirty_max_bytes: 1, ..opts() };
    let mut cuts = 0;
    for at in 0..200 {
        let image = base.crash();
        image.power_cut_after(at);
        let opened = Db::open_on(Box::new(image.clone()), replaying());
        let Some(cut) = image.take_power_cut() else {
            expect(&opened.unwrap(), at);
            break;
        };
        drop(opened);
        cuts += 1;
        let db = Db::open_on(Box::new(cut), opts())
            .unwrap_or_else(|e| panic!("cut after {at} ops of the replaying open: {e}"));
        expect(&db, at);
    }
    assert!(cuts > 4, "the replaying open made only {cuts} device ops");
}
