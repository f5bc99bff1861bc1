//! (f) Cache eviction vs a reader holding a block (design.md §8, §10.1;
//! `engine/src/store/cache.rs`).
//!
//! The clean-block cache (`arbor::cache::BlockCache`) has room for one block per shard and
//! holds address `A` (every byte 7). The writer inserts address `B` of the same shard, which
//! evicts `A`, then reuses address `A` for a new block (every byte 5). A reader takes
//! address 1 from the cache twice and keeps what it got; the main thread held the original
//! image from the start.
//!
//! Invariants: a held image never changes — not when its entry is evicted, nor when its
//! address is reused — and is never a mix of two blocks; a later lookup never returns an
//! older image than an earlier one (no evicted image comes back); the cache stays within
//! its budget.
#![cfg(loom)]

use arbor::cache::{BlockCache, SHARDS};
use arbor::sync::{thread, Arc};
use arbor::AlignedBuf;
use arbor_loom_tests::{Outcomes, BLOCK_BYTES};

const OLD: u8 = 7;
const OTHER: u8 = 9;
const NEW: u8 = 5;

fn block(fill: u8) -> Arc<AlignedBuf> {
    let mut b = AlignedBuf::zeroed(BLOCK_BYTES, BLOCK_BYTES);
    b.fill(fill);
    Arc::new(b)
}

/// The one value every byte of a held image has.
fn fill_of(image: &AlignedBuf) -> u8 {
    let first = image[0];
    assert!(image.iter().all(|&b| b == first), "a held image is a mix of two blocks");
    first
}

static OUTCOMES: Outcomes = Outcomes::new();

const A: u64 = 1;

/// The next address after `A` in the same cache shard (they compete for one block's room).
fn b_addr() -> u64 {
    (A + 1..).find(|b| BlockCache::shard_index(*b) == BlockCache::shard_index(A)).expect("some")
}

#[test]
fn a_held_image_survives_eviction_and_reuse_unchanged() {
    arbor_loom_tests::model(|| {
        let cache = Arc::new(BlockCache::new((SHARDS * BLOCK_BYTES) as u64));
        let b = b_addr();
        // Held without a lookup, so the CLOCK hand finds address 1 unreferenced and evicts
        // it unless the reader's lookup referenced it first.
        let held = block(OLD);
        cache.insert(A, Arc::clone(&held));

        let writer = {
            let cache = Arc::clone(&cache);
            thread::spawn(move || {
                cache.insert(b, block(OTHER));
                assert!(cache.bytes() <= BLOCK_BYTES as u64, "over budget");
                cache.insert(A, block(NEW));
                assert!(cache.bytes() <= BLOCK_BYTES as u64, "over budget");
            })
        };
        let reader = {
            let cache = Arc::clone(&cache);
            thread::spawn(move || {
                let first = cache.get(A);
                let second = cache.get(A);
                let fills = (first.as_deref().map(fill_of), second.as_deref().map(fill_of));
                // Address A goes OLD → absent → NEW, never back.
                let order = |f: Option<u8>| match f {
                    Some(OLD) => 0,
                    None => 1,
                    Some(NEW) => 2,
                    Some(other) => panic!("address A held another block's image ({other})"),
                };
                assert!(order(fills.0) <= order(fills.1), "an evicted image came back: {fills:?}");
                (first, fills.0)
            })
        };
        let (first, fill) = reader.join().expect("reader");
        writer.join().expect("writer");
        // Both images the reader and main hold are exactly what they were when taken.
        assert_eq!(fill_of(&held), OLD);
        if let (Some(image), Some(fill)) = (&first, fill) {
            assert_eq!(fill_of(image), fill, "a held image changed");
        }
        OUTCOMES.note(fill.map_or(3, usize::from));
        assert_eq!(cache.get(A).as_deref().map(fill_of), Some(NEW));
    });
    OUTCOMES.assert_seen(&[usize::from(OLD), usize::from(NEW), 3], "the reader's first lookup");
}
