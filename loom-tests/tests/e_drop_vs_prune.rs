//! (e) Snapshot drop vs prune (design.md §5, §10.6, §10.7).
//!
//! A snapshot handle is modelled as `txn/snapshot.rs` builds it: clones share one registration
//! (`Arc<SnapState>` plus the record), and the last clone's drop calls
//! `Registry::deregister`. One clone is dropped by the model's main thread while a reader
//! thread reads the block through its own clone and then drops it. Concurrently the writer
//! commits: under the registry lock it expires the oldest snapshot (the bound is exceeded),
//! sweeps, publishes, prunes the block's log below `prune_bound`, and — only when no
//! snapshot is left — releases the block (out of the table, its address reused).
//!
//! Invariants: a read through a live clone returns the block as of the snapshot's seq (or
//! `SnapshotExpired`), never released history; the registration leaves exactly once —
//! `departures` is 1 whether the sweep or the last drop removed it — and the registry ends
//! empty; no `Arc` (snapshot state, slot, handle) is leaked or freed early: loom's `Arc`
//! tracks every count and fails the execution on a leak.
#![cfg(loom)]

use arbor::modlog::{ItemValue, Op};
use arbor::mvcc::{Registry, RootRecord, Slot, SlotTable, SnapState};
use arbor::sync::{thread, Arc};
use arbor::Error;
use arbor_format::ValueRef;
use arbor_loom_tests::{expect, leaf_kv, record, seen, Outcomes, BLOCK_BYTES, KEY};

const ADDR: u64 = 100;
const GEN: u64 = 1;
const SEQ_SNAP: u64 = 1;
/// The writer's edit after the snapshot, and its commit.
const SEQ_EDIT: u64 = 2;
const SEQ_COMMIT: u64 = 3;

struct Db {
    registry: Registry,
    table: SlotTable,
}

/// `txn/snapshot.rs`'s `Inner`: shared by every clone of one snapshot.
struct Handle {
    db: Arc<Db>,
    state: Arc<SnapState>,
    root: RootRecord,
}

impl Handle {
    fn register(db: &Arc<Db>) -> Handle {
        let (root, state) = db.registry.register();
        Handle { db: Arc::clone(db), state, root }
    }

    fn read(&self) -> Result<(), Error> {
        let _op = self.state.enter()?;
        let slot = self.db.table.get(ADDR).expect("a block a live snapshot needs is in the table");
        let image = slot.image_at(self.root.seq, BLOCK_BYTES)?;
        assert_eq!(seen(&image), expect(ADDR, 1, &[(KEY, b"v0")]), "the block as of seq 1");
        Ok(())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.db.registry.deregister(&self.state);
    }
}

/// A commit over the bound: expire, sweep, publish, prune; release only an unneeded block.
fn commit(db: &Db, slot: &Arc<Slot>) -> bool {
    let mut r = db.registry.lock();
    r.expire_oldest();
    r.sweep();
    r.publish(record(SEQ_COMMIT, GEN, ADDR));
    let bound = r.prune_bound(SEQ_COMMIT + 1);
    let (_, _, left) = slot.prune_below(bound);
    if r.live().0 != 0 {
        assert_eq!(left, 1, "entry {SEQ_EDIT} pruned while the snapshot at 1 is registered");
        return false;
    }
    assert_eq!(left, 0);
    db.table.remove(ADDR, slot);
    db.table.insert(ADDR, Arc::new(Slot::new(ADDR, leaf_kv(ADDR, GEN, 2, b"later life"))));
    true
}

static OUTCOMES: Outcomes = Outcomes::new();

#[test]
fn a_dropped_snapshot_leaves_once_and_a_live_clone_keeps_its_history() {
    arbor_loom_tests::model(|| {
        let db = Arc::new(Db {
            registry: Registry::new(record(SEQ_SNAP, GEN, ADDR)),
            table: SlotTable::default(),
        });
        let slot = Arc::new(Slot::new(ADDR, leaf_kv(ADDR, GEN, 1, b"v0")));
        db.table.insert(ADDR, Arc::clone(&slot));
        let snap = Arc::new(Handle::register(&db));
        let mut seq = SEQ_SNAP;
        slot.edit_logged(Some(&mut seq), |node| {
            node.replace_value(0, ValueRef::Inline(b"v1")).expect("fits");
            Ok(Some(((), Op::Replace { slot: 0, old: ItemValue::Inline(b"v0".to_vec()) })))
        })
        .expect("edit");
        assert_eq!(seq, SEQ_EDIT);

        let writer = {
            let db = Arc::clone(&db);
            thread::spawn(move || commit(&db, &slot))
        };
        let reader = {
            let snap = Arc::clone(&snap);
            thread::spawn(move || snap.read())
        };
        drop(snap);
        let outcome = reader.join().expect("reader");
        assert!(matches!(outcome, Ok(()) | Err(Error::SnapshotExpired { .. })), "{outcome:?}");
        let released = writer.join().expect("writer");
        OUTCOMES.note(usize::from(outcome.is_ok()) * 2 + usize::from(released));

        let r = db.registry.lock();
        assert_eq!(r.live(), (0, None), "the registration outlived every clone");
        assert_eq!(r.departures, 1, "the registration left twice or never");
    });
    OUTCOMES.assert_seen(&[0b00, 0b01, 0b10, 0b11], "(read ok, released)");
}
