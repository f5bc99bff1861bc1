//! In-memory semantics, and a seeded random walk against a simple model that also persists,
//! reloads and advances durability.

use super::*;
use crate::io::AlignedBuf;
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};

pub(super) const BB: u32 = 4096;
/// Blocks per chunk and the first data block at 4 KiB.
pub(super) const BITS: u64 = 32_256;
pub(super) const FIRST: u64 = 64;

#[test]
fn fresh_store_reserves_the_superblock_area() {
    let a = Allocator::new(BB, FIRST + 1000);
    assert_eq!(a.block_count(), FIRST + 1000);
    assert_eq!(a.free_blocks(), 1000);
    assert!((0..FIRST).all(|b| a.is_allocated(b)));
    assert!(!a.is_allocated(FIRST) && !a.is_allocated(FIRST + 1000));
    assert_eq!(a.largest_free_run(), 1000);
    assert!(a.own_blocks().is_empty() && a.pending_blocks().is_empty());
}

#[test]
fn alloc_is_contiguous_and_next_fit() {
    let mut a = Allocator::new(BB, FIRST + 1000);
    assert_eq!(a.alloc(10), Ok(FIRST));
    assert_eq!(a.alloc(5), Ok(FIRST + 10));
    a.free_now(FIRST, 10);
    // Next-fit: the hole behind the cursor is used only after wrapping.
    assert_eq!(a.alloc(3), Ok(FIRST + 15));
    assert_eq!(a.alloc(982), Ok(FIRST + 18));
    assert_eq!(a.alloc(2), Ok(FIRST));
    assert_eq!(a.free_blocks(), 1000 - 5 - 3 - 982 - 2);
    assert_eq!(a.largest_free_run(), 8);
    assert_eq!(a.alloc(9), Err(AllocError::NoSpace));
    assert_eq!(a.alloc(8), Ok(FIRST + 2));
    assert_eq!(a.alloc(1), Err(AllocError::NoSpace));
    assert!(matches!(Error::from(AllocError::NoSpace), Error::NoSpace));
}

#[test]
fn runs_cross_chunk_boundaries() {
    let mut a = Allocator::new(BB, 3 * BITS);
    let first = a.alloc(BITS - FIRST - 5).unwrap();
    assert_eq!(first, FIRST);
    let run = a.alloc(20).unwrap();
    assert_eq!(run, BITS - 5);
    assert!((run..run + 20).all(|b| a.is_allocated(b)));
    a.free_now(run, 20);
    assert!(!a.is_allocated(BITS));
}

#[test]
fn grow_after_no_space() {
    let mut a = Allocator::new(BB, FIRST + 100);
    assert_eq!(a.alloc(101), Err(AllocError::NoSpace));
    assert_eq!(a.alloc(100), Ok(FIRST));
    assert_eq!(a.alloc(1), Err(AllocError::NoSpace));
    a.grow(FIRST + 100 + 2 * BITS);
    assert_eq!(a.free_blocks(), 2 * BITS);
    assert_eq!(a.alloc(BITS + 10), Ok(FIRST + 100));
    a.grow(FIRST); // never shrinks
    assert_eq!(a.block_count(), FIRST + 100 + 2 * BITS);
}

#[test]
fn pending_frees_wait_for_the_next_durable_generation() {
    let mut a = Allocator::new(BB, FIRST + 100);
    let x = a.alloc(10).unwrap();
    a.free_pending(x, 4, 5);
    a.free_pending(x + 4, 2, 5);
    a.free_pending(x + 8, 2, 6);
    assert_eq!(a.pending_blocks(), vec![(x, 6, 5), (x + 8, 2, 6)]);
    assert!(a.is_allocated(x) && a.is_allocated(x + 9));
    assert_eq!(a.free_blocks(), 90);
    a.note_durable(5);
    assert!(a.is_allocated(x));
    a.note_durable(6);
    assert!(!a.is_allocated(x) && a.is_allocated(x + 6) && a.is_allocated(x + 8));
    assert_eq!(a.free_blocks(), 96);
    a.note_durable(7);
    assert_eq!(a.free_blocks(), 98);
    assert!(a.pending_blocks().is_empty());
}

#[test]
#[should_panic(expected = "not allocated")]
fn double_free_is_refused() {
    let mut a = Allocator::new(BB, FIRST + 100);
    let x = a.alloc(2).unwrap();
    a.free_now(x, 2);
    a.free_now(x, 1);
}

/// The engine's reader over a map of written blocks: verifies like the engine does.
pub(super) fn reader(
    disk: &HashMap<u64, AlignedBuf>,
) -> impl FnMut(ChildPtr) -> Result<AlignedBuf> + '_ {
    move |ptr: ChildPtr| {
        let addr = ptr.address();
        let buf = disk.get(&addr).ok_or_else(|| Error::corrupt(addr, "never written"))?;
        arbor_format::verify_child(buf, &ptr).map_err(|e| Error::corrupt(addr, e.reason))?;
        Ok(buf.clone())
    }
}

/// splitmix64: a small, seeded, dependency-free generator.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The model: which blocks are allocated, what is pending, which blocks the allocator owns.
#[derive(Clone)]
struct Model {
    allocated: Vec<bool>,
    pending: BTreeMap<u64, Vec<u64>>,
    own: Vec<u64>,
    /// Data runs a durable superblock references (freed through pending).
    committed: Vec<(u64, u64)>,
}

impl Model {
    fn free_count(&self) -> u64 {
        self.allocated.iter().filter(|a| !**a).count() as u64
    }
    fn take(&mut self, start: u64, count: u64) {
        for b in start..start + count {
            assert!(!self.allocated[b as usize], "block {b} allocated twice");
            self.allocated[b as usize] = true;
        }
    }
    fn release(&mut self, start: u64, count: u64) {
        for b in start..start + count {
            assert!(self.allocated[b as usize]);
            self.allocated[b as usize] = false;
        }
    }
    fn note_durable(&mut self, gen: u64) {
        let kept = self.pending.split_off(&gen);
        for b in std::mem::replace(&mut self.pending, kept).into_values().flatten() {
            self.release(b, 1);
        }
    }
}

fn assert_matches(a: &Allocator, m: &Model) {
    assert_eq!(a.block_count(), m.allocated.len() as u64);
    assert_eq!(a.free_blocks(), m.free_count());
    for (b, &alloc) in m.allocated.iter().enumerate() {
        assert_eq!(a.is_allocated(b as u64), alloc, "block {b}");
    }
    let mut pending: Vec<(u64, u64)> = Vec::new();
    for (start, count, g) in a.pending_blocks() {
        pending.extend((start..start + count).map(|b| (g, b)));
    }
    let mut expected: Vec<(u64, u64)> =
        m.pending.iter().flat_map(|(g, bs)| bs.iter().map(move |b| (*g, *b))).collect();
    pending.sort_unstable();
    expected.sort_unstable();
    assert_eq!(pending, expected);
    let mut own = a.own_blocks();
    own.sort_unstable();
    let mut m_own = m.own.clone();
    m_own.sort_unstable();
    assert_eq!(own, m_own);
}

/// A random walk of allocations, frees (immediate for this generation's blocks, pending for
/// committed ones), commits (persist + durable), lagging durability, crashes (reload from
/// the last durable superblock) and growth, checked against the model after every step.
fn random_walk(seed: u64, steps: u32) {
    let mut rng = Rng(seed);
    let start_blocks = FIRST + 3000;
    let max_blocks = FIRST + 3 * BITS;
    let mut a = Allocator::new(BB, start_blocks);
    let mut m = Model {
        allocated: (0..start_blocks).map(|b| b < FIRST).collect(),
        pending: BTreeMap::new(),
        own: Vec::new(),
        committed: Vec::new(),
    };
    let mut fresh: Vec<(u64, u64)> = Vec::new();
    let mut disk: HashMap<u64, AlignedBuf> = HashMap::new();
    // The last persisted superblock not yet durable, and the last durable one (+ its model).
    let mut in_flight: Option<(ChildPtr, ChildPtr, u64, Model)> = None;
    let mut durable: Option<(ChildPtr, ChildPtr, u64, Model)> = None;
    let mut gen = 1u64;
    for _ in 0..steps {
        match rng.below(100) {
            0..=39 => {
                let span = if rng.below(8) == 0 { 300 } else { 8 };
                let count = 1 + rng.below(span);
                match a.alloc(count) {
                    Ok(start) => {
                        m.take(start, count);
                        fresh.push((start, count));
                    }
                    Err(AllocError::NoSpace) => {
                        assert!(a.largest_free_run() < count);
                        let grown = (a.block_count() + 1 + rng.below(5000)).min(max_blocks);
                        a.grow(grown);
                        m.allocated.resize(grown as usize, false);
                    }
                }
            }
            40..=54 if !fresh.is_empty() => {
                let (start, count) = fresh.swap_remove(rng.below(fresh.len() as u64) as usize);
                a.free_now(start, count);
                m.release(start, count);
            }
            55..=74 if !m.committed.is_empty() => {
                let i = rng.below(m.committed.len() as u64) as usize;
                let (start, count) = m.committed.swap_remove(i);
                a.free_pending(start, count, gen);
                m.pending.entry(gen).or_default().extend(start..start + count);
            }
            75..=91 => {
                // Commit `gen`: persist, write, and (usually) become durable at once.
                let persisted = loop {
                    match a.persist(gen) {
                        Ok(p) => break p,
                        Err(AllocError::NoSpace) => {
                            assert!(a.block_count() < max_blocks, "no space at the maximum");
                            let grown = (a.block_count() + 2000).min(max_blocks);
                            a.grow(grown);
                            m.allocated.resize(grown as usize, false);
                        }
                    }
                };
                apply_persist(&a, &mut m, &persisted, gen, &mut disk);
                m.committed.append(&mut fresh);
                let sb = (persisted.alloc_root, persisted.pending_root, gen, m.clone());
                if let Some(prev) = in_flight.replace(sb) {
                    a.note_durable(prev.2);
                    m.note_durable(prev.2);
                    durable = Some(prev);
                }
                if rng.below(4) != 0 {
                    let sb = in_flight.take().unwrap();
                    a.note_durable(sb.2);
                    m.note_durable(sb.2);
                    durable = Some(sb);
                }
                gen += 1;
            }
            92..=95 => {
                // Crash: reopen from the newest durable superblock.
                let Some((root, pending_root, g, model)) = durable.clone() else { continue };
                let count = model.allocated.len() as u64;
                let mut read = reader(&disk);
                a = Allocator::load(BB, count, root, pending_root, g, &mut read).unwrap();
                m = model;
                m.note_durable(g);
                fresh.clear();
                in_flight = None;
                gen = g + 1;
            }
            _ => {}
        }
        assert_eq!(a.free_blocks(), m.free_count());
    }
    assert_matches(&a, &m);
}

/// Applies a persist to the model: new own blocks were free and are now allocated, replaced
/// own blocks joined pending(gen), and the blocks go to the disk map.
fn apply_persist(
    a: &Allocator,
    m: &mut Model,
    p: &Persisted,
    gen: u64,
    disk: &mut HashMap<u64, AlignedBuf>,
) {
    assert!(a.persist_passes <= 2, "persist took {} passes", a.persist_passes);
    for (addr, buf) in &p.blocks {
        m.take(*addr, 1);
        let header = arbor_format::verify_block(buf, *addr).unwrap();
        assert_eq!(header.generation(), gen);
        assert_eq!(header.owner(), arbor_format::TREE_ID_ALLOCATOR);
        disk.insert(*addr, buf.clone());
    }
    let now = a.own_blocks();
    for old in m.own.iter().filter(|b| !now.contains(b)) {
        m.pending.entry(gen).or_default().push(*old);
    }
    m.own = now;
    assert_matches(a, m);
}

#[test]
fn random_walk_against_model() {
    for seed in 1..=4 {
        random_walk(seed, 3000);
    }
}
