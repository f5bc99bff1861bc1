//! (c) A reader copying a block vs the writer changing it and logging (design.md §5, §10.1).
//!
//! The writer edits a published block twice through `Slot::edit_logged` (replace the value,
//! then insert an item), each edit logged with the next seq. A reader at seq 1 (before both
//! edits) takes `Slot::image_at(1)`: it copies the image and the entries newer than 1 under
//! the read lock and rewinds its copy. Invariant: the copy plus the undone ops equals the
//! block as of seq 1, in every interleaving — which holds only because the edit and its
//! entry are made under one write lock. The broken variant appends the entry after
//! releasing the lock, and loom finds the reader that copies the edited image without it.
#![cfg(loom)]

use arbor::modlog::{ItemValue, Op};
use arbor::mvcc::Slot;
use arbor::sync::{thread, Arc};
use arbor_format::ValueRef;
use arbor_loom_tests::{expect, leaf_kv, seen, BLOCK_BYTES, KEY};

const ADDR: u64 = 100;
const OWNER: u64 = 7;
/// The reader's seq: the block's state after the last commit, before the writer's edits.
const SEQ_READER: u64 = 1;

fn model(new_slot: fn(u64, arbor::AlignedBuf) -> Slot) {
    arbor_loom_tests::model(move || {
        let slot = Arc::new(new_slot(ADDR, leaf_kv(ADDR, 1, OWNER, b"a")));

        let writer = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || {
                let mut seq = SEQ_READER;
                // Replace "a" with "b": undo restores "a".
                let replaced = slot.edit_logged(Some(&mut seq), |node| {
                    node.replace_value(0, ValueRef::Inline(b"b")).expect("fits");
                    Ok(Some(((), Op::Replace { slot: 0, old: ItemValue::Inline(b"a".to_vec()) })))
                });
                let logged = replaced.expect("edit").expect("changed").1.expect("logged");
                assert_eq!(logged.seq, SEQ_READER + 1);
                // Insert "z" → "c" after it: undo removes it.
                let inserted = slot.edit_logged(Some(&mut seq), |node| {
                    node.insert(1, b"z", ValueRef::Inline(b"c")).expect("fits");
                    Ok(Some(((), Op::Insert { slot: 1 })))
                });
                let logged = inserted.expect("edit").expect("changed").1.expect("logged");
                assert_eq!(logged.seq, SEQ_READER + 2);
            })
        };

        let image = slot.image_at(SEQ_READER, BLOCK_BYTES).expect("image at seq 1");
        assert_eq!(seen(&image), expect(ADDR, OWNER, &[(KEY, b"a")]), "the block as of seq 1");

        writer.join().expect("writer");
        // Both edits are in, and their entries rewind the final image to seq 1 and seq 2.
        let now = slot.image_at(u64::MAX, BLOCK_BYTES).expect("current image");
        assert_eq!(seen(&now), expect(ADDR, OWNER, &[(KEY, b"b"), (b"z", b"c")]));
        let at2 = slot.image_at(SEQ_READER + 1, BLOCK_BYTES).expect("image at seq 2");
        assert_eq!(seen(&at2), expect(ADDR, OWNER, &[(KEY, b"b")]));
    });
}

#[test]
fn copy_plus_undo_equals_the_block_at_the_readers_seq() {
    model(Slot::new);
}

/// The entry appended after the write lock is released: a reader can copy the edited image
/// before its entry exists and return the edited value as the value at seq 1.
#[test]
#[should_panic(expected = "the block as of seq 1")]
fn broken_log_after_unlock_is_caught() {
    model(Slot::new_broken_log_after_unlock);
}
