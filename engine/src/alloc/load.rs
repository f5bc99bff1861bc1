//! `Allocator::load`: rebuilds the allocator from a durable superblock's `alloc_root` and
//! `pending_root`. Every byte read is untrusted: the shape of the index follows from
//! `block_count` (never from the disk), every pointer is range-checked before it is read,
//! every pending extent must lie inside the device and be allocated, the pending chain must
//! not repeat a block and must run from the newest generation to the oldest. Any violation
//! is `Error::Corrupt`, never a panic.

use super::pending::Run;
use super::persist::to_usize;
use super::Allocator;
use super::{codec, INDEX_LEVELS_MAX};
use crate::io::AlignedBuf;
use crate::{Error, Result};
use arbor_format::ChildPtr;
use std::collections::HashSet;

/// The engine's block reader: fetches the block `ptr` names and verifies it against `ptr`.
pub(crate) type ReadBlock<'a> = dyn FnMut(ChildPtr) -> Result<AlignedBuf> + 'a;

impl Allocator {
    /// `Allocator::load` plus the orphan chain: the allocator a superblock describes.
    pub fn load_superblock(
        sb: &arbor_format::superblock::Superblock,
        durable_gen: u64,
        read: &mut ReadBlock<'_>,
    ) -> Result<Allocator> {
        let (bb, count) = (sb.block_bytes(), sb.block_count());
        let mut a =
            Allocator::load(bb, count, sb.alloc_root(), sb.pending_root(), durable_gen, read)?;
        a.load_orphans(sb.orphan_root(), read)?;
        if let Ok(Some(journal)) = sb.journal() {
            a.reserve_prefix(journal.end_block());
        }
        Ok(a)
    }

    /// Rebuilds from a durable superblock at generation `durable_gen`. Pending lists with
    /// freed_gen < durable_gen are free at once; those with freed_gen == durable_gen stay
    /// pending until `note_durable(durable_gen + 1)`.
    pub fn load(
        block_bytes: u32,
        block_count: u64,
        alloc_root: ChildPtr,
        pending_root: ChildPtr,
        durable_gen: u64,
        read: &mut ReadBlock<'_>,
    ) -> Result<Allocator> {
        if !arbor_format::is_valid_block_bytes(block_bytes) {
            return Err(Error::corrupt(0, format!("allocator: invalid block size {block_bytes}")));
        }
        let mut a = Allocator::empty(block_bytes, block_count);
        if a.ptrs.len() > INDEX_LEVELS_MAX + 1 {
            return Err(Error::corrupt(alloc_root.address(), "allocator index too deep"));
        }
        a.load_index(alloc_root, read)?;
        if !a.bitmap.all_set(0, a.first_data.min(block_count)) {
            return Err(Error::corrupt(alloc_root.address(), "superblock area marked free"));
        }
        let freed = a.load_pending(pending_root, durable_gen, read)?;
        // Everything so far matches the disk; only the runs freed below change the bitmap.
        a.bitmap.clear_dirty();
        a.check_own_blocks(&freed)?;
        for (_, run) in freed.iter().filter(|(g, _)| *g < durable_gen) {
            // Free now, and the chunk differs from its disk copy: rewrite it next persist.
            a.bitmap.clear_range(run.start, run.count);
        }
        a.pending_changed = freed.iter().any(|(g, _)| *g < durable_gen);
        Ok(a)
    }

    /// Reads the index top-down, then every chunk, into `ptrs` and the bitmap.
    fn load_index(&mut self, root: ChildPtr, read: &mut ReadBlock<'_>) -> Result<()> {
        let top = self.ptrs.len() - 1;
        if root.is_null() {
            return Err(Error::corrupt(0, "allocator root is null"));
        }
        self.ptrs[top][0] = root;
        let fanout = to_usize(self.fanout());
        let bits = self.bitmap.bits_per_chunk();
        for level in (1..=top).rev() {
            let covered = bits.saturating_mul(self.fanout().saturating_pow(level as u32));
            for i in 0..self.ptrs[level].len() {
                let ptr = self.ptrs[level][i];
                if ptr.is_null() {
                    // Never written: every chunk below is free (and stays null).
                    continue;
                }
                let buf = self.read_own(ptr, read)?;
                let below_len = self.ptrs[level - 1].len();
                let first = i * fanout;
                let expected = fanout.min(below_len - first);
                let first_block = (i as u64).saturating_mul(covered);
                let children = codec::decode_index(&buf, level as u8, first_block, expected)
                    .map_err(|r| Error::corrupt(ptr.address(), r))?;
                self.ptrs[level - 1][first..first + expected].copy_from_slice(&children);
            }
        }
        for k in 0..self.ptrs[0].len() {
            let ptr = self.ptrs[0][k];
            if ptr.is_null() {
                continue;
            }
            let buf = self.read_own(ptr, read)?;
            let words = codec::decode_chunk(&buf, k as u64 * bits)
                .map_err(|r| Error::corrupt(ptr.address(), r))?;
            if words.len() as u64 != bits / 64 {
                return Err(Error::corrupt(ptr.address(), "bitmap chunk of the wrong size"));
            }
            self.bitmap.load_chunk(k as u64, &words);
        }
        Ok(())
    }

    /// Range-checks `ptr`, then reads it through the engine (which verifies it).
    fn read_own(&self, ptr: ChildPtr, read: &mut ReadBlock<'_>) -> Result<AlignedBuf> {
        let addr = ptr.address();
        if addr < self.first_data || addr >= self.bitmap.block_count() {
            return Err(Error::corrupt(addr, "allocator block address outside the device"));
        }
        let buf = read(ptr)?;
        if buf.len() != self.block_bytes as usize {
            return Err(Error::corrupt(addr, "allocator block of the wrong length"));
        }
        Ok(buf)
    }

    /// Walks the pending chain. Every extent is checked and cleared (so an overlap shows up
    /// as a block that is not allocated); runs that stay pending are set again and recorded.
    /// Returns every run read, with its generation.
    fn load_pending(
        &mut self,
        head: ChildPtr,
        durable_gen: u64,
        read: &mut ReadBlock<'_>,
    ) -> Result<Vec<(u64, Run)>> {
        let mut runs = Vec::new();
        let mut seen = HashSet::new();
        let mut newest = durable_gen;
        let mut ptr = head;
        // Each list occupies its own block: the chain is no longer than the device.
        while !ptr.is_null() {
            let addr = ptr.address();
            if !seen.insert(addr) || seen.len() as u64 > self.bitmap.block_count() {
                return Err(Error::corrupt(addr, "pending lists form a cycle"));
            }
            let buf = self.read_own(ptr, read)?;
            let list = codec::decode_pending(&buf).map_err(|r| Error::corrupt(addr, r))?;
            let freed_gen = list.freed_gen;
            if freed_gen > newest {
                let why = format!("pending list of generation {freed_gen} after {newest}");
                return Err(Error::corrupt(addr, why));
            }
            newest = freed_gen;
            for (start, count) in list.extents {
                let run = self.check_pending_extent(addr, start, count)?;
                self.bitmap.clear_range(run.start, run.count);
                runs.push((freed_gen, run));
            }
            self.pending_lists.push(ptr);
            ptr = list.next;
        }
        // Runs were cleared to catch overlaps; all are allocated again until decided.
        for (g, run) in &runs {
            self.bitmap.set_range(run.start, run.count);
            if *g >= durable_gen {
                self.pending.insert(*g, *run);
            }
        }
        Ok(runs)
    }

    fn check_pending_extent(&self, list: u64, start: u64, count: u64) -> Result<Run> {
        let end = start.checked_add(count);
        let in_range = end.is_some_and(|e| e <= self.bitmap.block_count());
        if count == 0 || start < self.first_data || !in_range {
            let why = format!("pending extent {start}+{count} outside the data blocks");
            return Err(Error::corrupt(list, why));
        }
        if !self.bitmap.all_set(start, count) {
            let why = format!("pending extent {start}+{count} is free or listed twice");
            return Err(Error::corrupt(list, why));
        }
        Ok(Run { start, count })
    }

    /// The allocator's own blocks must be allocated and in no pending run (`runs` are
    /// disjoint: `load_pending` checked that).
    fn check_own_blocks(&self, runs: &[(u64, Run)]) -> Result<()> {
        let mut sorted: Vec<Run> = runs.iter().map(|(_, r)| *r).collect();
        sorted.sort_by_key(|r| r.start);
        for addr in self.own_blocks() {
            let i = sorted.partition_point(|r| r.end() <= addr);
            let pending = sorted.get(i).is_some_and(|r| r.start <= addr);
            if !self.bitmap.is_set(addr) || pending {
                return Err(Error::corrupt(addr, "allocator block marked free or pending"));
            }
        }
        Ok(())
    }
}
