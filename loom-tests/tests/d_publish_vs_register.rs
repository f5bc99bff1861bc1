//! (d) Commit publishing a root vs a reader loading it (design.md §10.3).
//!
//! The writer commits as `txn/write.rs` does: the transaction's new root block B becomes
//! published (inserted into the readers' table), then, under the registry lock, it sweeps,
//! publishes the immutable record `{seq 2, gen, catalog → B}` with `RegInner::publish` and
//! computes the prune bound. Two readers (a spawned thread and the model's main thread)
//! take a snapshot with `Registry::register` and read their root block through the table
//! and `Slot::image_at`, as `SnapSource::node` does.
//!
//! Invariants: a reader gets the old record or the new one, whole (never the new seq with
//! the old root or the reverse); the seq it registered is its record's seq; and the root
//! its record names is readable and is that record's tree — B is in the table before any
//! reader can see the record that points to it.
#![cfg(loom)]

use arbor::mvcc::{Registry, RootRecord, Slot, SlotTable};
use arbor::sync::{thread, Arc};
use arbor_loom_tests::{expect, leaf_kv, record, seen, BLOCK_BYTES, KEY};

const GEN: u64 = 1;
const OLD_ADDR: u64 = 100;
const NEW_ADDR: u64 = 200;

struct Db {
    registry: Registry,
    table: SlotTable,
}

fn old_record() -> RootRecord {
    record(1, GEN, OLD_ADDR)
}

fn new_record() -> RootRecord {
    record(2, GEN, NEW_ADDR)
}

fn commit(db: &Db) {
    let b = Arc::new(Slot::new(NEW_ADDR, leaf_kv(NEW_ADDR, GEN, 1, b"new")));
    db.table.insert(NEW_ADDR, b);
    let mut r = db.registry.lock();
    r.sweep();
    r.publish(new_record());
    let bound = r.prune_bound(new_record().seq + 1);
    assert_eq!(bound, r.live().1.unwrap_or(new_record().seq + 1));
}

fn read(db: &Db) {
    let (root, snap) = db.registry.register();
    assert!(root == old_record() || root == new_record(), "a mixed record: {root:?}");
    assert_eq!(snap.seq, root.seq, "registered at another seq than the record's");
    let addr = root.catalog.address();
    let slot = db.table.get(addr).expect("the published root is in the readers' table");
    let image = slot.image_at(root.seq, BLOCK_BYTES).expect("image");
    let value: &[u8] = if root.seq == 1 { b"old" } else { b"new" };
    assert_eq!(seen(&image), expect(addr, 1, &[(KEY, value)]), "the record's own tree");
    db.registry.deregister(&snap);
}

#[test]
fn a_reader_sees_the_old_or_the_new_record_never_a_mix() {
    arbor_loom_tests::model(|| {
        let db =
            Arc::new(Db { registry: Registry::new(old_record()), table: SlotTable::default() });
        let a = Arc::new(Slot::new(OLD_ADDR, leaf_kv(OLD_ADDR, GEN, 1, b"old")));
        db.table.insert(OLD_ADDR, a);

        let writer = {
            let db = Arc::clone(&db);
            thread::spawn(move || commit(&db))
        };
        let reader = {
            let db = Arc::clone(&db);
            thread::spawn(move || read(&db))
        };
        read(&db);
        writer.join().expect("writer");
        reader.join().expect("reader");
        assert_eq!(db.registry.root(), new_record());
        assert_eq!(db.registry.lock().live(), (0, None));
    });
}
