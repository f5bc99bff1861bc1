//! (f) Buffer-pool eviction and address reuse vs a reader holding a block (design.md §8,
//! §12.2–12.3; `engine/src/store/pool/`).
//!
//! The pool has room for one frame and holds address `A` (every byte 7). The writer loads
//! address `B` (every byte 9), which evicts `A` unless a reader pins it, then discards `A`
//! (its block was freed) and installs a new block at `A` (every byte 5). A reader pins `A`
//! twice, holding the first pin while it takes the second. Under loom the frames are loom
//! cells, so a read of a frame while an eviction, a load or an install writes it is a
//! detected race, not a silent torn read.
//!
//! Invariants: a pinned frame never changes while pinned — not when the pool needs room,
//! nor when its address is discarded and reused — and is never a mix of two blocks; a
//! later pin never returns an older block than an earlier one (no evicted image comes
//! back); the pool stays within its budget. The broken variant (`Broken::PinWithoutRecheck`:
//! a pin taken with a blind `fetch_add`, not a compare-and-swap of the word the reader saw)
//! must be caught.
#![cfg(loom)]

use arbor::pool::{Broken, BufferPool};
use arbor::sync::{thread, Arc};
use arbor_loom_tests::Outcomes;

const OLD: u8 = 7;
const OTHER: u8 = 9;
const NEW: u8 = 5;
/// Frames are tiny under loom: the cost is in synchronisation points, not bytes.
const FRAME: usize = 8;
const A: u64 = 0;
const B: u64 = 1;

/// The one value every byte of a pinned frame has.
fn fill_of(bytes: &[u8]) -> u8 {
    let first = bytes[0];
    assert!(bytes.iter().all(|&b| b == first), "a pinned frame is a mix of two blocks");
    first
}

fn fill(value: u8) -> impl FnOnce(&mut [u8]) -> arbor::Result<()> {
    move |frame| {
        frame.fill(value);
        Ok(())
    }
}

fn model(broken: Broken, seen: &'static Outcomes) {
    arbor_loom_tests::model(move || {
        let pool = Arc::new(BufferPool::with_broken(FRAME as u32, FRAME as u64, 2, broken));
        drop(pool.load(A, fill(OLD)).expect("load A").expect("room for A"));

        let writer = {
            let pool = Arc::clone(&pool);
            thread::spawn(move || {
                // Needs A's frame unless the reader holds A: then it reads around the pool.
                if let Some(b) = pool.load(B, fill(OTHER)).expect("load B") {
                    assert_eq!(fill_of(&b), OTHER);
                }
                assert!(pool.len() <= 1, "over budget: {} frames", pool.len());
                pool.discard(A);
                pool.discard(B);
                let image = [NEW; FRAME];
                pool.install(A, &image);
                assert!(pool.len() <= 1, "over budget: {} frames", pool.len());
            })
        };
        let reader = {
            let pool = Arc::clone(&pool);
            thread::spawn(move || {
                let first = pool.pin(A);
                let first_fill = first.as_deref().map(fill_of);
                let second = pool.pin(A);
                let second_fill = second.as_deref().map(fill_of);
                // Address A goes OLD → absent → NEW, never back.
                let order = |f: Option<u8>| match f {
                    Some(OLD) => 0,
                    None => 1,
                    Some(NEW) => 2,
                    Some(other) => panic!("address A held another block's image ({other})"),
                };
                if first.is_some() {
                    // Held across the second pin: the second sees the same block, or none
                    // (the address was discarded: retired, no new pins) — never another.
                    let same = second_fill.is_none() || second_fill == first_fill;
                    assert!(
                        same,
                        "a held pin's block was replaced: {first_fill:?} → {second_fill:?}"
                    );
                } else {
                    assert!(order(first_fill) <= order(second_fill), "an evicted image came back");
                }
                // The held frame is exactly what it was when pinned.
                assert_eq!(first.as_deref().map(fill_of), first_fill, "a pinned frame changed");
                first_fill
            })
        };
        let first = reader.join().expect("reader");
        writer.join().expect("writer");
        seen.note(first.map_or(3, usize::from));
        // The install went in, or (if the reader held A then) was refused and A evicted.
        let end = pool.pin(A).as_deref().map(fill_of);
        assert!(matches!(end, Some(NEW) | None), "address A ends as {end:?}");
        assert!(pool.len() <= 1, "over budget: {} frames", pool.len());
    });
}

static SEEN: Outcomes = Outcomes::new();

#[test]
fn a_pinned_frame_survives_eviction_and_reuse_unchanged() {
    model(Broken::None, &SEEN);
    SEEN.assert_seen(&[usize::from(OLD), usize::from(NEW), 3], "the reader's first pin");
}

static BROKEN: Outcomes = Outcomes::new();

/// loom reports the reader's access of a frame that an eviction or a load writes.
#[test]
#[should_panic(expected = "Causality violation: Concurrent read and write accesses")]
fn a_pin_without_the_recheck_is_caught() {
    model(Broken::PinWithoutRecheck, &BROKEN);
}
