//! (b) Free vs reallocation with a seq outstanding — the seed (design.md §6, §10.5: the btrfs
//! tree-mod-log reuse bug it comes from).
//!
//! Block identity A (a leaf at address 100, allocated at seq 1) is the tree's root as of
//! seq 1. The writer's commit 2 moves the root to a new block B at 200 and frees A at
//! f = 2; under the registry lock it asks `RegInner::any_in(1, 2)` whether an outstanding
//! snapshot can still reach A. If not, A leaves the readers' table and its address is free,
//! and commit 3 reallocates 100 to a new identity C with other contents (the btrfs case:
//! a freed root reused as the root of another tree). If A is pinned, C goes elsewhere.
//! A reader registers (`Registry::register`) and later reads its root's address through the
//! table and `Slot::image_at`, exactly as `SnapSource::node` does.
//!
//! Invariant: the reader sees the identity its record names — at seq 1, A with its
//! contents — never the address's later life (C, or nothing). The broken variant turns
//! pinning off, and loom finds the reader at seq 1 that reads address 100 after the reuse.
#![cfg(loom)]

use arbor::mvcc::{Registry, Slot, SlotTable};
use arbor::sync::{thread, Arc};
use arbor_loom_tests::{expect, leaf_kv, record, seen, Outcomes, Seen, BLOCK_BYTES, KEY};

const GEN: u64 = 1;
const A_ADDR: u64 = 100;
const A_ALLOC_SEQ: u64 = 1;
const A_FREE_SEQ: u64 = 2;
const B_ADDR: u64 = 200;
/// Where C goes when A's address is still pinned.
const SPARE_ADDR: u64 = 300;

/// What a reader at `seq` must find at its root: A, B or C (whose address depends on
/// whether A's address was reused).
fn expected(seq: u64, addr: u64) -> Seen {
    match seq {
        1 => expect(A_ADDR, 1, &[(KEY, b"old")]),
        2 => expect(B_ADDR, 1, &[(KEY, b"mid")]),
        3 => expect(addr, 2, &[(KEY, b"new")]),
        _ => unreachable!("the model publishes seqs 1 to 3"),
    }
}

struct Db {
    registry: Registry,
    table: SlotTable,
}

/// The writer: commit 2 frees A through the pinning rule, commit 3 allocates C.
fn writer(db: &Db, a: &Arc<Slot>) -> bool {
    let b = Arc::new(Slot::new(B_ADDR, leaf_kv(B_ADDR, GEN, 1, b"mid")));
    db.table.insert(B_ADDR, b);
    let reusable = {
        let mut r = db.registry.lock();
        r.sweep();
        let pinned = r.any_in(A_ALLOC_SEQ, A_FREE_SEQ);
        if !pinned {
            // No snapshot can reach A: it leaves the table and its address is free.
            db.table.remove(A_ADDR, a);
        }
        r.publish(record(A_FREE_SEQ, GEN, B_ADDR));
        !pinned
    };
    let c_addr = if reusable { A_ADDR } else { SPARE_ADDR };
    let c = Arc::new(Slot::new(c_addr, leaf_kv(c_addr, GEN, 2, b"new")));
    db.table.insert(c_addr, c);
    let mut r = db.registry.lock();
    r.sweep();
    r.publish(record(A_FREE_SEQ + 1, GEN, c_addr));
    reusable
}

/// A snapshot's read of its root block, as `SnapSource::node` does it; returns its seq.
fn reader(db: &Db) -> u64 {
    let (root, snap) = db.registry.register();
    assert_eq!(snap.seq, root.seq, "a snapshot registers the seq of the record it copied");
    let addr = root.catalog.address();
    let Some(slot) = db.table.get(addr) else {
        panic!("reader at seq {}: block {addr} is gone: it saw the block's later life", root.seq);
    };
    let image = slot.image_at(root.seq, BLOCK_BYTES).expect("image");
    assert_eq!(
        seen(&image),
        expected(root.seq, addr),
        "reader at seq {}: it saw the block's later life",
        root.seq
    );
    db.registry.deregister(&snap);
    root.seq
}

fn model(no_pinning: bool) {
    arbor_loom_tests::model(move || {
        let a = Arc::new(Slot::new(A_ADDR, leaf_kv(A_ADDR, GEN, 1, b"old")));
        let db = Arc::new(Db {
            registry: Registry::new(record(1, GEN, A_ADDR)),
            table: SlotTable::default(),
        });
        db.registry.lock().broken_no_pinning = no_pinning;
        db.table.insert(A_ADDR, Arc::clone(&a));

        let w = {
            let (db, a) = (Arc::clone(&db), Arc::clone(&a));
            thread::spawn(move || writer(&db, &a))
        };
        let seq = reader(&db);
        let reused = w.join().expect("writer");
        if !no_pinning {
            OUTCOMES.note(usize::from(reused) * 4 + usize::try_from(seq).expect("small"));
        }

        // The reader has left: a later commit finds A's pin releasable.
        assert!(
            !db.registry.lock().any_in(A_ALLOC_SEQ, A_FREE_SEQ),
            "the pin outlived its snapshot"
        );
    });
}

/// (address reused, reader's seq) across loom's exploration.
static OUTCOMES: Outcomes = Outcomes::new();

#[test]
fn a_reader_never_sees_a_reused_blocks_later_life() {
    model(false);
    // Not vacuous: a reader at seq 1 that pinned A (and read it after commit 3 or not), and
    // readers at seqs 2 and 3 that registered after the free, with the address reused.
    OUTCOMES.assert_seen(&[1, 4 + 2, 4 + 3], "(reused, seq)");
}

/// Pinning off: the writer reuses address 100 while a reader at seq 1 can still reach A.
#[test]
#[should_panic(expected = "later life")]
fn broken_no_pinning_is_caught() {
    model(true);
}
