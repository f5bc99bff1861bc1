//! (a) Snapshot registration vs pruning (design.md §5: registration, the minimum and pruning
//! share one lock; entries are pruned strictly below the oldest outstanding seq).
//!
//! The writer runs two transactions on one published block, each a logged edit followed by
//! a commit that, under the registry lock, sweeps, publishes, computes
//! `RegInner::prune_bound` and prunes the block's log with `Slot::prune_below` — the order
//! `txn/write.rs` uses. Meanwhile a reader that holds a snapshot at seq 1 refreshes it: it
//! registers a new snapshot, drops the old one, and reads the block as of the new seq.
//!
//! Invariants: (1) when the writer prunes, no pruned entry has a seq ≥ any outstanding
//! snapshot's seq (checked under the registry lock, so the set of snapshots is exact);
//! (2) the reader's image is the block as of its seq.
//!
//! Seqs follow design.md §5 literally here: a commit publishes its transaction's *last* seq,
//! so an entry with seq equal to a snapshot's seq exists and the `<` of the rule is
//! observable. (The engine's `txn/write.rs` gives each commit a fresh seq that no entry carries;
//! with that numbering pruning `<= min` drops only entries no reader undoes, and neither
//! variant of the rule changes what a reader sees.) The broken variant prunes with `<=`,
//! and loom finds the refresh that leaves a snapshot at seq 2 while entry 2 is pruned.
#![cfg(loom)]

use arbor::modlog::{ItemValue, Op};
use arbor::mvcc::{Registry, Slot};
use arbor::sync::{thread, Arc};
use arbor_format::ValueRef;
use arbor_loom_tests::{expect, leaf_kv, record, seen, BLOCK_BYTES, KEY};

const ADDR: u64 = 100;
const GEN: u64 = 1;
/// The block's value as of seq 1, 2 and 3.
const VALUES: [&[u8]; 3] = [b"v0", b"v1", b"v2"];

struct Db {
    registry: Registry,
    slot: Slot,
}

/// One transaction: replace the value (logged at the next seq), then commit it.
fn transaction(db: &Db, seq: &mut u64) {
    let i = usize::try_from(*seq).expect("small") - 1;
    let (old, new) = (VALUES[i], VALUES[i + 1]);
    db.slot
        .edit_logged(Some(seq), |node| {
            node.replace_value(0, ValueRef::Inline(new)).expect("fits");
            Ok(Some(((), Op::Replace { slot: 0, old: ItemValue::Inline(old.to_vec()) })))
        })
        .expect("edit")
        .expect("changed");
    let mut r = db.registry.lock();
    r.sweep();
    r.publish(record(*seq, GEN, ADDR));
    let bound = r.prune_bound(*seq + 1);
    let logged: Vec<u64> = db.slot.read().log.iter().map(|e| e.seq).collect();
    let (pruned, _, _) = db.slot.prune_below(bound);
    if let (_, Some(oldest)) = r.live() {
        for seq_pruned in &logged[..pruned] {
            assert!(
                *seq_pruned < oldest,
                "entry {seq_pruned} pruned while a snapshot at seq {oldest} is outstanding"
            );
        }
    }
}

fn model(prune_inclusive: bool) {
    arbor_loom_tests::model(move || {
        let slot = Slot::new(ADDR, leaf_kv(ADDR, GEN, 1, VALUES[0]));
        let db = Arc::new(Db { registry: Registry::new(record(1, GEN, ADDR)), slot });
        db.registry.lock().broken_prune_inclusive = prune_inclusive;
        let (_, held) = db.registry.register();

        let writer = {
            let db = Arc::clone(&db);
            thread::spawn(move || {
                let mut seq = 1;
                transaction(&db, &mut seq);
                transaction(&db, &mut seq);
            })
        };
        let reader = {
            let db = Arc::clone(&db);
            thread::spawn(move || {
                let (root, snap) = db.registry.register();
                db.registry.deregister(&held);
                let image = db.slot.image_at(snap.seq, BLOCK_BYTES).expect("image");
                let value = VALUES[usize::try_from(root.seq).expect("small") - 1];
                assert_eq!(seen(&image), expect(ADDR, 1, &[(KEY, value)]), "the block at S");
                db.registry.deregister(&snap);
            })
        };
        writer.join().expect("writer");
        reader.join().expect("reader");
        assert_eq!(db.registry.lock().live(), (0, None));
    });
}

#[test]
fn no_entry_a_snapshot_needs_is_pruned() {
    model(false);
}

/// Pruning with `<=`: entry 2 goes while the refreshed snapshot at seq 2 is outstanding.
#[test]
#[should_panic(expected = "pruned while a snapshot at seq 2 is outstanding")]
fn broken_prune_inclusive_is_caught() {
    model(true);
}
