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
fn reclaimable_blocks_leave_out_held_runs() {
    let mut a = Allocator::new(BB, FIRST + 100);
    let x = a.alloc(20).unwrap();
    a.free_pending(x, 4, 5);
    a.free_pending(x + 4, 3, 5);
    a.hold(x + 4, 3);
    a.free_pending(x + 10, 5, 6);
    a.hold(x + 10, 2);
    assert_eq!(a.reclaimable_blocks(), 4 + 3);
    // pending(5) becomes free except its held run, which is masked.
    a.note_durable(6);
    assert_eq!((a.free_blocks(), a.reclaimable_blocks()), (84, 3));
    // A masked run released is free at once; a held pending run released waits as before.
    a.release_hold(x + 4, 3);
    a.release_hold(x + 10, 2);
    assert_eq!((a.free_blocks(), a.reclaimable_blocks()), (87, 5));
    a.note_durable(7);
    assert_eq!((a.free_blocks(), a.reclaimable_blocks()), (92, 0));
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

/// A durable or in-flight superblock: allocator roots, generation, and the model at persist.
type Super = (ChildPtr, ChildPtr, u64, Model);

/// What a walk did, to check that it exercised every path.
#[derive(Debug, Default)]
struct Counts {
    allocs: u32,
    no_space: u32,
    persists: u32,
    two_pass: u32,
    lagged: u32,
    reloads: u32,
}

/// A random walk of allocations, frees (immediate for this generation's blocks, pending for
/// committed ones), commits (persist + durable), lagging durability, crashes (reload from
/// the last durable superblock) and growth, checked against the model after every step.
struct Walk {
    rng: Rng,
    a: Allocator,
    m: Model,
    /// Runs allocated in the open generation (freed at once).
    fresh: Vec<(u64, u64)>,
    disk: HashMap<u64, AlignedBuf>,
    in_flight: Option<Super>,
    durable: Option<Super>,
    gen: u64,
    max_blocks: u64,
    counts: Counts,
}

impl Walk {
    fn new(seed: u64) -> Walk {
        let start_blocks = FIRST + 3000;
        Walk {
            rng: Rng(seed),
            a: Allocator::new(BB, start_blocks),
            m: Model {
                allocated: (0..start_blocks).map(|b| b < FIRST).collect(),
                pending: BTreeMap::new(),
                own: Vec::new(),
                committed: Vec::new(),
            },
            fresh: Vec::new(),
            disk: HashMap::new(),
            in_flight: None,
            durable: None,
            gen: 1,
            max_blocks: FIRST + 3 * BITS,
            counts: Counts::default(),
        }
    }

    fn grow(&mut self, by: u64) {
        let grown = (self.a.block_count() + by).min(self.max_blocks);
        self.a.grow(grown);
        self.m.allocated.resize(grown as usize, false);
    }

    fn step(&mut self) {
        let full = self.m.free_count() * 10 < self.m.allocated.len() as u64;
        match self.rng.below(100) {
            0..=39 => self.alloc(),
            40..=54 if !self.fresh.is_empty() => {
                let i = self.rng.below(self.fresh.len() as u64) as usize;
                let (start, count) = self.fresh.swap_remove(i);
                self.a.free_now(start, count);
                self.m.release(start, count);
            }
            // Free committed data more eagerly when the device is nearly full.
            55..=74 | 96..=99
                if !self.m.committed.is_empty() && (full || self.rng.below(2) == 0) =>
            {
                let i = self.rng.below(self.m.committed.len() as u64) as usize;
                let (start, count) = self.m.committed.swap_remove(i);
                self.a.free_pending(start, count, self.gen);
                self.m.pending.entry(self.gen).or_default().extend(start..start + count);
            }
            75..=91 => self.commit(),
            92..=95 => self.crash(),
            _ => {}
        }
        assert_eq!(self.a.free_blocks(), self.m.free_count());
    }

    fn alloc(&mut self) {
        let span = if self.rng.below(8) == 0 { 300 } else { 8 };
        let count = 1 + self.rng.below(span);
        self.counts.allocs += 1;
        match self.a.alloc(count) {
            Ok(start) => {
                self.m.take(start, count);
                self.fresh.push((start, count));
            }
            Err(AllocError::NoSpace) => {
                assert!(self.a.largest_free_run() < count);
                self.counts.no_space += 1;
                let by = 1 + self.rng.below(3000);
                self.grow(by);
            }
        }
    }

    /// Commit `gen`: persist, write, and become durable at once or one commit later.
    fn commit(&mut self) {
        let persisted = loop {
            match self.a.persist(self.gen) {
                Ok(p) => break p,
                Err(AllocError::NoSpace) => {
                    assert!(self.a.block_count() < self.max_blocks, "no space at the maximum");
                    self.grow(2000);
                }
            }
        };
        self.counts.persists += 1;
        self.counts.two_pass += u32::from(self.a.persist_passes == 2);
        apply_persist(&self.a, &mut self.m, &persisted, self.gen, &mut self.disk);
        self.m.committed.append(&mut self.fresh);
        let sb = (persisted.alloc_root, persisted.pending_root, self.gen, self.m.clone());
        if let Some(prev) = self.in_flight.replace(sb) {
            self.make_durable(prev);
        }
        if self.rng.below(4) != 0 {
            let sb = self.in_flight.take().expect("just set");
            self.make_durable(sb);
        } else {
            self.counts.lagged += 1;
        }
        self.gen += 1;
    }

    fn make_durable(&mut self, sb: Super) {
        self.a.note_durable(sb.2);
        self.m.note_durable(sb.2);
        self.durable = Some(sb);
    }

    /// Crash: reopen from the newest durable superblock, as recovery does.
    fn crash(&mut self) {
        let Some((root, pending_root, g, model)) = self.durable.clone() else { return };
        let count = model.allocated.len() as u64;
        let mut read = reader(&self.disk);
        self.a = Allocator::load(BB, count, root, pending_root, g, &mut read).unwrap();
        self.m = model;
        self.m.note_durable(g);
        assert_matches(&self.a, &self.m);
        self.fresh.clear();
        self.in_flight = None;
        self.gen = g + 1;
        self.counts.reloads += 1;
    }
}

fn random_walk(seed: u64, steps: u32) -> Counts {
    let mut walk = Walk::new(seed);
    for _ in 0..steps {
        walk.step();
    }
    assert_matches(&walk.a, &walk.m);
    walk.counts
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
        let counts = random_walk(seed, 4000);
        eprintln!("seed {seed}: {counts:?}");
        let Counts { no_space, two_pass, lagged, reloads, .. } = counts;
        assert!(no_space > 0 && two_pass > 0 && lagged > 10 && reloads > 10, "seed {seed}");
    }
}
