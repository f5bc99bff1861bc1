//! `Allocator::persist`: the allocator's part of a commit (design.md §10.13).
//!
//! What is written for generation `gen`:
//! * every dirty bitmap chunk (clean chunks are never rewritten),
//! * the index path above them (index blocks whose subtree holds a dirty chunk), and
//! * the pending lists of every outstanding generation ≤ `gen`, so a reopen at `gen` knows
//!   which allocated blocks are only waiting for a later durable generation.
//!
//! The previous addresses of everything rewritten join pending(`gen`): the previous
//! superblock still references them, so they become reusable only once `gen + 1` is durable.
//!
//! The allocator's own blocks are allocated last, when every other allocation of the
//! generation is done, because allocating them changes the bitmap they describe. Passes:
//! 1. Plan: count dirty chunks, dirty index blocks and pending-list blocks. Allocate that
//!    many, from chunks that are already dirty (one contiguous run if one fits, else pieces),
//!    so the allocation itself dirties nothing new. Only if dirty chunks lack room, take one
//!    clean chunk that has room for the rest *plus* the slack of a second pass.
//! 2. Re-plan: a chunk dirtied in pass 1 adds itself, its index path and perhaps one pending
//!    block. Allocate those from the now dirty chunks (the slack guarantees room).
//!
//! A third round happens only on a nearly full, fragmented device; the loop is bounded by
//! `PERSIST_PASSES_MAX` and then gives up with `NoSpace` (after undoing its allocations), so
//! the engine can grow the device and retry.

use super::codec;
use super::pending::{insert_merged, Run};
use super::{AllocError, Allocator, Persisted};
use crate::io::AlignedBuf;
use arbor_format::{pending_list_capacity, ChildPtr};

/// Bound on allocation rounds in one persist (two suffice unless space is very short).
const PERSIST_PASSES_MAX: u32 = 8;

/// What a persist must write, for the bitmap as it is now.
struct Plan {
    /// Dirty chunk numbers, ascending.
    chunks: Vec<u64>,
    /// `index[l - 1]`: dirty index blocks of level l, ascending.
    index: Vec<Vec<u64>>,
    /// Addresses of the blocks being replaced (they join pending(gen)).
    old: Vec<u64>,
    /// Pending lists to write, head first: `(freed_gen, runs)`, at most one block's worth each.
    lists: Vec<(u64, Vec<Run>)>,
    /// Orphan-list blocks to write (0 when the orphans did not change).
    orphan_blocks: usize,
}

impl Plan {
    fn block_count(&self) -> u64 {
        let index: usize = self.index.iter().map(Vec::len).sum();
        (self.chunks.len() + index + self.lists.len() + self.orphan_blocks) as u64
    }
}

impl Allocator {
    /// Persists the allocator for generation `gen`; see the module comment. Every returned
    /// block is sealed with generation `gen` and owner `TREE_ID_ALLOCATOR`. On `NoSpace`
    /// nothing changed but the chunk dirty flags: grow the device and call again.
    pub fn persist(&mut self, gen: u64) -> Result<Persisted, AllocError> {
        // Right after the generation's last allocation, if there is room in the same dirty
        // chunk: then the commit's blocks and the allocator's own form one contiguous write.
        // The cursor is not reset: the next generation continues after this one (next fit
        // over the whole device, wrapping), so each commit writes one sequential run instead
        // of filling single-block holes at the lowest addresses.
        let after = self.cursor;
        if self.bitmap.dirty_count() == 0
            && !self.pending_changed
            && !self.orphans_changed
            && !self.root().is_null()
        {
            // Nothing changed since the last persist: the old roots still describe it.
            return Ok(Persisted {
                alloc_root: self.root(),
                pending_root: self.pending_lists.first().copied().unwrap_or(ChildPtr::NULL),
                orphan_root: self.orphan_root(),
                blocks: Vec::new(),
            });
        }
        let mut own: Vec<Run> = Vec::new();
        let mut passes = 0;
        let plan = loop {
            let plan = self.plan(gen);
            let have: u64 = own.iter().map(|r| r.count).sum();
            let need = plan.block_count();
            if have >= need {
                self.release_surplus(&mut own, have - need);
                break plan;
            }
            passes += 1;
            let slack = self.ptrs.len() as u64 + 1;
            let got = if passes > PERSIST_PASSES_MAX {
                None
            } else {
                self.alloc_own(need - have, slack, after)
            };
            match got {
                Some(runs) => own.extend(runs),
                None => {
                    own.iter().for_each(|r| self.bitmap.clear_range(r.start, r.count));
                    return Err(AllocError::NoSpace);
                }
            }
        };
        self.persist_passes = passes;
        let mut addrs = own.iter().flat_map(|r| r.start..r.end());
        let blocks = self.write_plan(gen, plan, &mut addrs);
        debug_assert!(addrs.next().is_none(), "every allocated own block is used");
        Ok(blocks)
    }

    /// The top index block's pointer.
    pub(super) fn root(&self) -> ChildPtr {
        self.ptrs.last().and_then(|l| l.first()).copied().unwrap_or(ChildPtr::NULL)
    }

    fn plan(&self, gen: u64) -> Plan {
        let chunks = self.bitmap.dirty_chunks();
        let fanout = self.fanout();
        let mut index = Vec::new();
        let mut below = chunks.clone();
        for _level in 1..self.ptrs.len() {
            let mut parents: Vec<u64> = below.iter().map(|i| i / fanout).collect();
            parents.dedup();
            below = parents.clone();
            index.push(parents);
        }
        let mut old = Vec::new();
        for (level, dirty) in std::iter::once(&chunks).chain(index.iter()).enumerate() {
            let ptrs = &self.ptrs[level];
            let replaced = dirty.iter().filter_map(|&i| ptrs.get(to_usize(i)));
            old.extend(replaced.filter(|p| !p.is_null()).map(|p| p.address()));
        }
        old.extend(self.pending_lists.iter().map(|p| p.address()));
        if self.orphans_changed {
            old.extend(self.orphan_lists.iter().map(|p| p.address()));
        }
        let lists = self.plan_lists(gen, &old);
        Plan { chunks, index, old, lists, orphan_blocks: self.orphan_blocks_planned() }
    }

    /// The pending lists as they will be after `old` joins pending(gen): every generation
    /// ≤ gen, newest first, split into blocks of `pending_list_capacity` extents.
    fn plan_lists(&self, gen: u64, old: &[u64]) -> Vec<(u64, Vec<Run>)> {
        let capacity = pending_list_capacity(self.block_bytes);
        let mut current = self.pending.runs(gen).to_vec();
        old.iter().for_each(|&a| insert_merged(&mut current, Run { start: a, count: 1 }));
        let older = self.pending.iter().filter(|(g, _)| *g < gen);
        let per_gen = std::iter::once((gen, current.as_slice()))
            .chain(older.collect::<Vec<_>>().into_iter().rev());
        let mut lists = Vec::new();
        for (g, runs) in per_gen {
            lists.extend(runs.chunks(capacity).map(|piece| (g, piece.to_vec())));
        }
        lists
    }

    /// Frees the last `surplus` blocks of `own` (the plan shrank: merged pending runs).
    fn release_surplus(&mut self, own: &mut Vec<Run>, mut surplus: u64) {
        while surplus > 0 {
            let Some(last) = own.last_mut() else { return };
            let n = surplus.min(last.count);
            last.count -= n;
            surplus -= n;
            self.bitmap.clear_range(last.start + last.count, n);
            if last.count == 0 {
                own.pop();
            }
        }
    }

    /// Allocates `count` blocks for the allocator's own use (module comment, pass 1).
    /// `None` if there is not enough free space; then nothing was allocated.
    fn alloc_own(&mut self, count: u64, slack: u64, after: u64) -> Option<Vec<Run>> {
        let bits = self.bitmap.bits_per_chunk();
        let k = after / bits;
        if after < self.bitmap.block_count() && self.bitmap.is_dirty(k) {
            let end = ((k + 1) * bits).min(self.bitmap.block_count());
            if let Some(start) = self.bitmap.find_run(after.max(self.first_data), end, count) {
                self.bitmap.set_range(start, count);
                return Some(vec![Run { start, count }]);
            }
        }
        let dirty = self.bitmap.dirty_chunks();
        for &k in &dirty {
            if self.bitmap.chunk_free(k) >= count {
                if let Some(start) = self.bitmap.find_run(k * bits, (k + 1) * bits, count) {
                    self.bitmap.set_range(start, count);
                    return Some(vec![Run { start, count }]);
                }
            }
        }
        let mut runs = Vec::new();
        let mut left = count;
        for &k in &dirty {
            left = self.take_pieces(k * bits, (k + 1) * bits, left, &mut runs);
        }
        // One clean chunk with room for the rest and for the second pass, else any.
        let chunk_count = self.bitmap.chunk_count();
        let roomy = (0..chunk_count).find(|&k| {
            !self.bitmap.is_dirty(k) && self.bitmap.chunk_free(k) >= left.saturating_add(slack)
        });
        if let Some(k) = roomy.filter(|_| left > 0) {
            left = self.take_pieces(k * bits, (k + 1) * bits, left, &mut runs);
        }
        if left > 0 {
            left = self.take_pieces(self.first_data, self.bitmap.block_count(), left, &mut runs);
        }
        if left > 0 {
            runs.iter().for_each(|r| self.bitmap.clear_range(r.start, r.count));
            return None;
        }
        Some(runs)
    }

    /// Allocates free runs in `[from, end)`, lowest first, until `want` blocks are taken.
    /// Returns how many are still wanted.
    fn take_pieces(&mut self, from: u64, end: u64, mut want: u64, out: &mut Vec<Run>) -> u64 {
        let end = end.min(self.bitmap.block_count());
        let mut pos = from.max(self.first_data);
        while want > 0 && pos < end {
            let Some(start) = self.bitmap.next_clear(pos, end) else { break };
            let stop = self.bitmap.next_set(start, end).unwrap_or(end);
            let count = (stop - start).min(want);
            self.bitmap.set_range(start, count);
            out.push(Run { start, count });
            want -= count;
            pos = start + count;
        }
        want
    }

    /// Encodes and seals every block of `plan` at the addresses `addrs` yields, and makes
    /// the new pointers current.
    fn write_plan(
        &mut self,
        gen: u64,
        plan: Plan,
        addrs: &mut dyn Iterator<Item = u64>,
    ) -> Persisted {
        let bb = self.block_bytes;
        let bits = self.bitmap.bits_per_chunk();
        let mut blocks = Vec::with_capacity(to_usize(plan.block_count()));
        let mut next_addr = || addrs.next().expect("the plan's block count was allocated");
        for &k in &plan.chunks {
            let addr = next_addr();
            let buf = codec::encode_chunk(bb, addr, gen, k * bits, &self.persisted_words(k));
            self.ptrs[0][to_usize(k)] = sealed_ptr(&buf, addr, gen);
            blocks.push((addr, buf));
        }
        let fanout = to_usize(self.fanout());
        for (i, dirty) in plan.index.iter().enumerate() {
            let level = i + 1;
            let covered = bits.saturating_mul(self.fanout().saturating_pow(level as u32));
            for &b in dirty {
                let addr = next_addr();
                let below = &self.ptrs[level - 1];
                let first = to_usize(b) * fanout;
                let children = &below[first..(first + fanout).min(below.len())];
                let first_block = b.saturating_mul(covered);
                let buf = codec::encode_index(bb, addr, gen, level as u8, first_block, children);
                self.ptrs[level][to_usize(b)] = sealed_ptr(&buf, addr, gen);
                blocks.push((addr, buf));
            }
        }
        // Old blocks join pending(gen) only now: the plan already counted them in.
        for &a in &plan.old {
            self.pending.insert(gen, Run { start: a, count: 1 });
        }
        let lists = self.write_lists(gen, &plan.lists, &mut next_addr, &mut blocks);
        self.pending_lists = lists;
        // The old chain's blocks are already in `plan.old` (pending(gen)).
        let _ = self.write_orphans(gen, &mut next_addr, &mut blocks);
        self.pending_changed = false;
        self.bitmap.clear_dirty();
        blocks.sort_by_key(|(a, _)| *a);
        debug_assert!(blocks.iter().all(|(a, _)| self.bitmap.is_set(*a)));
        Persisted {
            alloc_root: self.root(),
            pending_root: self.pending_lists.first().copied().unwrap_or(ChildPtr::NULL),
            orphan_root: self.orphan_root(),
            blocks,
        }
    }

    /// Writes the chain of pending lists (head first in `lists`), tail first so each block
    /// knows its successor's crc. Returns the new pointers, head first.
    fn write_lists(
        &self,
        gen: u64,
        lists: &[(u64, Vec<Run>)],
        next_addr: &mut dyn FnMut() -> u64,
        blocks: &mut Vec<(u64, AlignedBuf)>,
    ) -> Vec<ChildPtr> {
        let addrs: Vec<u64> = lists.iter().map(|_| next_addr()).collect();
        let mut ptrs = vec![ChildPtr::NULL; lists.len()];
        let mut next = ChildPtr::NULL;
        for (i, (freed_gen, runs)) in lists.iter().enumerate().rev() {
            let addr = addrs[i];
            let buf = codec::encode_pending(self.block_bytes, addr, gen, *freed_gen, next, runs);
            next = sealed_ptr(&buf, addr, gen);
            ptrs[i] = next;
            blocks.push((addr, buf));
        }
        ptrs
    }
}

/// The pointer to a sealed block just encoded at `addr` in generation `gen`.
fn sealed_ptr(buf: &[u8], addr: u64, gen: u64) -> ChildPtr {
    let header = arbor_format::BlockHeader::from_block(buf).expect("encoded block has a header");
    debug_assert_eq!(arbor_format::block_crc(buf), header.crc());
    ChildPtr::new(addr, gen, header.crc())
}

/// An in-memory count or index as a `usize` (bounded by in-memory vectors).
pub(super) fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
