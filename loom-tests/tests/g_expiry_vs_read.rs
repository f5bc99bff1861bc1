//! (g) The bound's expiry vs a reader mid-read (design.md §5 "Bounded", §10.7).
//!
//! A snapshot at seq 1 is outstanding; the writer has since changed the block (entry 2 in
//! its log). A reader operation starts with `SnapState::enter` (active++, then check
//! `expired`), reads the block through the table and `Slot::image_at(1)`, and ends when
//! its guard drops. Over the bound, the writer — under the registry lock — expires the
//! oldest snapshot (`RegInner::expire_oldest`), sweeps (`RegInner::sweep` drops expired
//! snapshots no operation is using), and only if the snapshot is gone releases its history:
//! prunes the entry below `prune_bound`, takes the block out of the table and reuses the
//! address for a new identity.
//!
//! Invariant: the reader finishes with the block as of seq 1 or gets `SnapshotExpired`,
//! never a released block; and the writer releases only after the sweep removed the
//! snapshot.
#![cfg(loom)]

use arbor::modlog::{ItemValue, Op};
use arbor::mvcc::{Registry, Slot, SlotTable, SnapState};
use arbor::sync::{thread, Arc};
use arbor::Error;
use arbor_format::ValueRef;
use arbor_loom_tests::{expect, leaf_kv, record, seen, Outcomes, BLOCK_BYTES, KEY};

const ADDR: u64 = 100;
const GEN: u64 = 1;
const SEQ_SNAP: u64 = 1;

struct Db {
    registry: Registry,
    table: SlotTable,
}

/// One reader operation of the snapshot at seq 1.
fn read(db: &Db, snap: &SnapState) -> Result<(), Error> {
    let _op = snap.enter()?;
    let slot = db.table.get(ADDR).expect("a pinned block stays in the table");
    let image = slot.image_at(snap.seq, BLOCK_BYTES)?;
    assert_eq!(seen(&image), expect(ADDR, 1, &[(KEY, b"v0")]), "the block as of seq 1");
    Ok(())
}

/// The writer over the bound: expire, sweep, and release only what no snapshot holds.
fn expire_and_release(db: &Db, slot: &Arc<Slot>) -> bool {
    let mut r = db.registry.lock();
    assert!(r.expire_oldest(), "the snapshot was live");
    r.sweep();
    if r.live().0 != 0 {
        return false; // A reader operation is in progress: release at a later commit.
    }
    let (pruned, _, left) = slot.prune_below(r.prune_bound(3));
    assert_eq!((pruned, left), (1, 0));
    db.table.remove(ADDR, slot);
    let reuse = Arc::new(Slot::new(ADDR, leaf_kv(ADDR, GEN, 2, b"later life")));
    db.table.insert(ADDR, reuse);
    true
}

/// Outcomes seen across loom's exploration: (read ok, writer released).
static OUTCOMES: Outcomes = Outcomes::new();

#[test]
fn a_reader_finishes_correctly_or_gets_snapshot_expired() {
    arbor_loom_tests::model(|| {
        let db = Arc::new(Db {
            registry: Registry::new(record(SEQ_SNAP, GEN, ADDR)),
            table: SlotTable::default(),
        });
        let slot = Arc::new(Slot::new(ADDR, leaf_kv(ADDR, GEN, 1, b"v0")));
        let mut seq = SEQ_SNAP;
        slot.edit_logged(Some(&mut seq), |node| {
            node.replace_value(0, ValueRef::Inline(b"v1")).expect("fits");
            Ok(Some(((), Op::Replace { slot: 0, old: ItemValue::Inline(b"v0".to_vec()) })))
        })
        .expect("edit");
        db.table.insert(ADDR, Arc::clone(&slot));
        let (_, snap) = db.registry.register();

        let writer = {
            let db = Arc::clone(&db);
            thread::spawn(move || expire_and_release(&db, &slot))
        };
        // The reader on its own thread too, so that which side goes first is a free choice
        // and loom's preemption bound is spent on the interesting switches.
        let reader = {
            let (db, snap) = (Arc::clone(&db), Arc::clone(&snap));
            thread::spawn(move || read(&db, &snap))
        };
        let outcome = reader.join().expect("reader");
        assert!(matches!(outcome, Ok(()) | Err(Error::SnapshotExpired { .. })), "{outcome:?}");
        let released = writer.join().expect("writer");
        OUTCOMES.note(usize::from(outcome.is_ok()) * 2 + usize::from(released));
        // Expired now, in every interleaving; a later read never touches the block.
        assert!(matches!(read(&db, &snap), Err(Error::SnapshotExpired { .. })));
        if !released {
            // The writer saw the operation in progress; the next commit's sweep removes it.
            let mut r = db.registry.lock();
            r.sweep();
            assert_eq!(r.live(), (0, None));
        }
        db.registry.deregister(&snap);
    });
    // Not vacuous: loom reached every combination — a read that finished before the expiry
    // (then released) or while the writer waited for it, and a read refused as expired
    // while the writer waited for its guard or after the release.
    OUTCOMES.assert_seen(&[0b00, 0b01, 0b10, 0b11], "(read ok, released)");
}
