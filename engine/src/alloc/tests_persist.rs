//! Persist → load round trips, the per-commit write set, and corrupt inputs.

use super::pending::Run;
use super::tests::{reader, Rng, BB, BITS, FIRST};
use super::*;
use crate::io::AlignedBuf;
use crate::Error;
use std::collections::HashMap;

type Disk = HashMap<u64, AlignedBuf>;

fn write(disk: &mut Disk, p: &Persisted) {
    for (addr, buf) in &p.blocks {
        disk.insert(*addr, buf.clone());
    }
}

fn load(disk: &Disk, count: u64, p: &Persisted, durable_gen: u64) -> crate::Result<Allocator> {
    let mut read = reader(disk);
    Allocator::load(BB, count, p.alloc_root, p.pending_root, durable_gen, &mut read)
}

fn assert_same(a: &Allocator, b: &Allocator) {
    assert_eq!(a.block_count(), b.block_count());
    assert_eq!(a.free_blocks(), b.free_blocks());
    assert!((0..a.block_count()).all(|x| a.is_allocated(x) == b.is_allocated(x)));
    assert_eq!(a.pending_blocks(), b.pending_blocks());
    assert_eq!(a.own_blocks(), b.own_blocks());
}

#[test]
fn round_trip_rewrites_only_dirty_chunks() {
    let count = 4 * BITS - 100; // 4 chunks, the last one partial; one index level
    let mut a = Allocator::new(BB, count);
    let mut disk = Disk::new();
    // Gen 1: a fresh store writes chunk 0 (the superblock area) and the root only.
    let p1 = a.persist(1).unwrap();
    assert_eq!(p1.blocks.len(), 2);
    assert!(p1.pending_root.is_null());
    write(&mut disk, &p1);
    a.note_durable(1);
    let b = load(&disk, count, &p1, 1).unwrap();
    assert_same(&a, &b);
    let own1 = a.own_blocks();
    assert!(own1.iter().all(|&x| b.is_allocated(x)));

    // Gen 2: touch chunk 2 only. Chunk 2, the root and one pending list are written; the
    // allocator's new blocks come from chunk 2 (already dirty), so chunk 0 stays clean.
    a.grow(count); // no-op
    let mut a2 = b;
    a2.cursor = 2 * BITS;
    let data = a2.alloc(50).unwrap();
    assert_eq!(data, 2 * BITS);
    let chunk0_before = a2.ptrs[0][0];
    let p2 = a2.persist(2).unwrap();
    assert_eq!(a2.persist_passes, 1);
    assert_eq!(p2.blocks.len(), 3, "one chunk, the root, one pending list");
    assert_eq!(a2.ptrs[0][0], chunk0_before, "clean chunk 0 not rewritten");
    assert!(p2.blocks.iter().all(|(addr, _)| addr / BITS == 2));
    // The previous chunk-0 block? Not replaced. The previous root: pending(2), allocated.
    let old_root = p1.alloc_root.address();
    assert!(a2.is_allocated(old_root));
    assert_eq!(a2.pending_blocks(), vec![(old_root, 1, 2)]);
    write(&mut disk, &p2);

    // Reopen at gen 2: pending(2) is still pending; note_durable(3) frees it.
    let mut c = load(&disk, count, &p2, 2).unwrap();
    assert_same(&a2, &c);
    assert!(c.is_allocated(old_root));
    c.note_durable(3);
    assert!(!c.is_allocated(old_root));

    // Gen 3 persisted before gen 3 is durable: it records pending(2) and pending(3).
    let y = a2.alloc(1).unwrap();
    a2.free_pending(data, 10, 3);
    let p3 = a2.persist(3).unwrap();
    write(&mut disk, &p3);
    let pending_gens: Vec<u64> = a2.pending_blocks().iter().map(|p| p.2).collect();
    assert!(pending_gens.contains(&2) && pending_gens.contains(&3));
    // Reopen at 3: pending(2) is free at once, pending(3) is not.
    let d = load(&disk, count, &p3, 3).unwrap();
    assert!(!d.is_allocated(old_root));
    assert!(d.is_allocated(data) && d.is_allocated(y));
    assert!(d.pending_blocks().iter().all(|p| p.2 == 3));
    assert!(d.own_blocks().iter().all(|&o| d.is_allocated(o)));
    // The chunk holding pending(2) differs from disk now: the next persist rewrites it.
    assert!(d.bitmap.dirty_count() >= 1);
}

#[test]
fn nothing_changed_writes_nothing() {
    let mut a = Allocator::new(BB, FIRST + 5000);
    let p1 = a.persist(1).unwrap();
    let p2 = a.persist(2).unwrap();
    assert!(p2.blocks.is_empty());
    assert_eq!(p2.alloc_root, p1.alloc_root);
}

#[test]
fn growth_adds_an_index_level() {
    let fanout = alloc_index_fanout(BB) as u64;
    let count = 100 * BITS; // one index level
    let mut a = Allocator::new(BB, count);
    let mut disk = Disk::new();
    let p1 = a.persist(1).unwrap();
    assert_eq!(p1.blocks.len(), 2, "chunk 0 and the root");
    write(&mut disk, &p1);
    a.note_durable(1);
    a.cursor = 50 * BITS;
    let x = a.alloc(7).unwrap();
    let p2 = a.persist(2).unwrap();
    assert_eq!(p2.blocks.len(), 3, "chunk 50, the root, one pending list");
    write(&mut disk, &p2);
    a.note_durable(2);
    let b = load(&disk, count, &p2, 2).unwrap();
    assert_same(&a, &b);
    assert!((x..x + 7).all(|y| b.is_allocated(y)));

    // 173 chunks need two index levels. Growth rewrites the old last chunk and its path;
    // the new chunks stay unwritten (null: all free).
    let bigger = (fanout + 5) * BITS;
    let mut c = b;
    c.grow(bigger);
    assert_eq!(c.ptrs.len(), 3);
    let p3 = c.persist(3).unwrap();
    // Chunk 99, level-1 block 0, the new root, and the lists of pending(2) and pending(3).
    assert_eq!(p3.blocks.len(), 5);
    write(&mut disk, &p3);
    c.note_durable(3);
    let d = load(&disk, bigger, &p3, 3).unwrap();
    assert_same(&c, &d);
    let pending: u64 = d.pending_blocks().iter().map(|p| p.1).sum();
    let own = d.own_blocks().len() as u64;
    assert_eq!(d.free_blocks(), bigger - FIRST - 7 - own - pending);

    // A chunk under the new level-1 block: that block is written for the first time.
    let mut e = d;
    e.cursor = (fanout + 2) * BITS;
    let y = e.alloc(3).unwrap();
    let p4 = e.persist(4).unwrap();
    // Chunk 170 and level-1 block 1 (first write); chunk 0 and level-1 block 0, because the
    // load at 3 freed pending(2) there; the root; the lists of pending(3) and pending(4).
    assert_eq!(p4.blocks.len(), 7);
    write(&mut disk, &p4);
    e.note_durable(4);
    let f = load(&disk, bigger, &p4, 4).unwrap();
    assert_same(&e, &f);
    assert!(f.is_allocated(y + 2));
}

#[test]
fn own_blocks_spill_into_one_clean_chunk_in_two_passes() {
    let count = 3 * BITS;
    let mut a = Allocator::new(BB, count);
    let mut disk = Disk::new();
    write(&mut disk, &a.persist(1).unwrap());
    a.note_durable(1);
    // Fill chunk 0 completely: its own blocks must go to a clean chunk.
    let free0 = a.bitmap.chunk_free(0);
    a.alloc(free0).unwrap();
    let p = a.persist(2).unwrap();
    assert_eq!(a.persist_passes, 2);
    write(&mut disk, &p);
    a.note_durable(2);
    let b = load(&disk, count, &p, 2).unwrap();
    assert_same(&a, &b);
}

#[test]
fn persist_no_space_undoes_its_allocations() {
    let count = FIRST + 10;
    let mut a = Allocator::new(BB, count);
    a.alloc(10).unwrap();
    assert_eq!(a.persist(1).unwrap_err(), AllocError::NoSpace);
    assert_eq!(a.free_blocks(), 0);
    a.grow(count + 10);
    let p = a.persist(1).unwrap();
    let mut disk = Disk::new();
    write(&mut disk, &p);
    let b = load(&disk, count + 10, &p, 1).unwrap();
    assert_same(&a, &b);
}

/// A store with data, persisted twice (so pending lists exist), for the corruption tests.
fn populated() -> (Disk, Persisted, u64) {
    let count = 2 * BITS;
    let mut a = Allocator::new(BB, count);
    let mut disk = Disk::new();
    write(&mut disk, &a.persist(1).unwrap());
    let x = a.alloc(100).unwrap();
    write(&mut disk, &a.persist(2).unwrap());
    a.free_pending(x, 30, 3);
    a.alloc(5).unwrap();
    let p = a.persist(3).unwrap();
    write(&mut disk, &p);
    (disk, p, count)
}

/// Replaces the pending head with a list holding `runs` for `freed_gen`.
fn with_pending(disk: &mut Disk, p: &Persisted, freed_gen: u64, runs: &[Run]) -> Persisted {
    let addr = p.pending_root.address();
    let buf = codec::encode_pending(BB, addr, 3, freed_gen, ChildPtr::NULL, runs);
    let crc = arbor_format::block_crc(&buf);
    disk.insert(addr, buf);
    Persisted {
        alloc_root: p.alloc_root,
        pending_root: ChildPtr::new(addr, 3, crc),
        orphan_root: ChildPtr::NULL,
        blocks: vec![],
    }
}

fn assert_corrupt(r: crate::Result<Allocator>) {
    match r {
        Err(Error::Corrupt { .. }) => {}
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("expected Corrupt, got a loaded allocator"),
    }
}

#[test]
fn corrupt_pending_lists_are_refused() {
    let (disk, p, count) = populated();
    assert!(load(&disk, count, &p, 3).is_ok());
    let bad: [(u64, Run); 5] = [
        (3, Run { start: count - 1, count: 2 }),    // past the end
        (3, Run { start: 1, count: 1 }),            // superblock area
        (3, Run { start: FIRST + 3000, count: 1 }), // a free block
        (3, Run { start: FIRST, count: 0 }),        // empty
        (4, Run { start: FIRST, count: 1 }),        // newer than the superblock
    ];
    for (freed_gen, run) in bad {
        let mut d = disk.clone();
        let q = with_pending(&mut d, &p, freed_gen, &[run]);
        assert_corrupt(load(&d, count, &q, 3));
    }
    // The same extent twice.
    let mut d = disk.clone();
    let run = Run { start: FIRST, count: 2 };
    let q = with_pending(&mut d, &p, 3, &[run, Run { start: FIRST + 1, count: 1 }]);
    assert_corrupt(load(&d, count, &q, 3));
    // A pending extent covering one of the allocator's own blocks.
    let mut d = disk.clone();
    let own = p.alloc_root.address();
    let q = with_pending(&mut d, &p, 3, &[Run { start: own, count: 1 }]);
    assert_corrupt(load(&d, count, &q, 3));
    // A pending root that is an index block (wrong kind), and a root that is a list.
    let q = Persisted {
        alloc_root: p.alloc_root,
        pending_root: p.alloc_root,
        orphan_root: ChildPtr::NULL,
        blocks: vec![],
    };
    assert_corrupt(load(&disk, count, &q, 3));
    let q = Persisted {
        alloc_root: p.pending_root,
        pending_root: p.pending_root,
        orphan_root: ChildPtr::NULL,
        blocks: vec![],
    };
    assert_corrupt(load(&disk, count, &q, 3));
}

#[test]
fn corrupt_index_is_refused() {
    let (disk, p, count) = populated();
    let root = p.alloc_root.address();
    let children: Vec<ChildPtr> = {
        let buf = &disk[&root];
        codec::decode_index(buf, 1, 0, 2).unwrap()
    };
    let reseal = |children: &[ChildPtr], level: u8, first: u64| {
        let buf = codec::encode_index(BB, root, 3, level, first, children);
        let crc = arbor_format::block_crc(&buf);
        (buf, ChildPtr::new(root, 3, crc))
    };
    let mut out_of_range = children.clone();
    out_of_range[1] = ChildPtr::new(count + 5, 3, 0);
    let mut swapped = children.clone();
    swapped.swap(0, 1);
    let cases = [
        reseal(&children[..1], 1, 0), // too few children
        reseal(&children, 2, 0),      // wrong level
        reseal(&children, 1, 7),      // wrong first block
        reseal(&out_of_range, 1, 0),  // child outside the device
        reseal(&swapped, 1, 0),       // chunks in the wrong slots
    ];
    for (buf, ptr) in cases {
        let mut d = disk.clone();
        d.insert(root, buf);
        let q = Persisted {
            alloc_root: ptr,
            pending_root: p.pending_root,
            orphan_root: ChildPtr::NULL,
            blocks: vec![],
        };
        assert_corrupt(load(&d, count, &q, 3));
    }
}

#[test]
fn random_damage_never_panics() {
    let (disk, p, count) = populated();
    let mut rng = Rng(7);
    let addrs: Vec<u64> = disk.keys().copied().collect();
    for _ in 0..400 {
        let mut d = disk.clone();
        let addr = addrs[rng.below(addrs.len() as u64) as usize];
        let buf = d.get_mut(&addr).unwrap();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(BB as u64) as usize;
            buf[at] ^= 1 << rng.below(8);
        }
        // Reseal, so the damage gets past the checksum into the decoders.
        arbor_format::seal_block(buf);
        let crc = arbor_format::block_crc(buf);
        let fix =
            |ptr: ChildPtr| if ptr.address() == addr { ChildPtr::new(addr, 3, crc) } else { ptr };
        let q = Persisted {
            alloc_root: fix(p.alloc_root),
            pending_root: fix(p.pending_root),
            orphan_root: ChildPtr::NULL,
            blocks: vec![],
        };
        // Either outcome is fine; a panic is not.
        let _ = load(&d, count, &q, 3);
    }
}

#[test]
fn shrink_drops_an_index_level_and_round_trips() {
    let fanout = alloc_index_fanout(BB) as u64;
    let count = (fanout + 5) * BITS; // two index levels
    let mut a = Allocator::new(BB, count);
    let mut disk = Disk::new();
    let x = a.alloc(7).unwrap();
    let p1 = a.persist(1).unwrap();
    write(&mut disk, &p1);
    a.note_durable(1);
    let last = a.last_allocated().unwrap();
    assert!(last < BITS, "everything in use sits in chunk 0: {last}");
    assert!(a.own_blocks().iter().chain([&x]).all(|&b| b <= last));
    let own_before = a.own_blocks();
    let cut = 10 * BITS + 7;
    a.shrink(cut, 2);
    assert_eq!((a.block_count(), a.ptrs.len()), (cut, 2), "one index level for 11 chunks");
    let own = a.own_blocks();
    let dropped: Vec<u64> = own_before.into_iter().filter(|b| !own.contains(b)).collect();
    assert_eq!(dropped.len(), 1, "the old root is no more");
    assert_eq!(a.pending_blocks(), vec![(dropped[0], 1, 2)]);
    assert_eq!(a.free_blocks(), cut - FIRST - 7 - own.len() as u64 - 1);
    let p2 = a.persist(2).unwrap();
    write(&mut disk, &p2);
    a.note_durable(2);
    let b = load(&disk, cut, &p2, 2).unwrap();
    assert_same(&a, &b);
    // A superblock that still names the old count (a crash after the file was cut) loads
    // with every block past the cut free, and cuts to the same end.
    let mut c = load(&disk, count, &p1, 1).unwrap();
    assert!(c.last_allocated().unwrap() < cut);
    c.shrink(cut, 2);
    assert_eq!((c.block_count(), c.free_blocks()), (cut, a.free_blocks() + 3));
}
