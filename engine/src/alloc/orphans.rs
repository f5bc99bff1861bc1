//! The orphan list (design.md §10.17): roots of deleted trees' subtrees whose blocks are not
//! freed yet. `delete_tree` hands the frozen part of a tree to the list instead of walking it
//! in one commit; later commits take a bounded number of blocks off it and free them through
//! the pinning rule (design.md §6). The list is persisted with the allocator (a chain of
//! orphan-list blocks under the superblock's `orphan_root`) only when it changed, so a crash
//! loses nothing: the next session carries on freeing.

use std::collections::HashSet;

use arbor_format::header::seal_block;
use arbor_format::{orphan_list_capacity, ChildPtr, OrphanList};

use super::load::ReadBlock;
use super::Allocator;
use crate::io::AlignedBuf;
use crate::{Error, Result};

impl Allocator {
    /// A subtree to free later.
    pub fn push_orphan(&mut self, root: ChildPtr) {
        self.orphans.push(root);
        self.orphans_changed = true;
    }

    /// Every subtree still to free.
    pub fn orphans(&self) -> &[ChildPtr] {
        &self.orphans
    }

    /// Restores a list saved with `orphans().to_vec()`.
    pub fn set_orphans(&mut self, orphans: Vec<ChildPtr>) {
        self.orphans = orphans;
        self.orphans_changed = true;
    }

    /// Drops the orphans pushed after the first `len` (an aborted transaction's).
    pub fn truncate_orphans(&mut self, len: usize) {
        if self.orphans.len() > len {
            self.orphans.truncate(len);
            self.orphans_changed = true;
        }
    }

    /// Orphan-list blocks the next persist writes (0 when the list did not change).
    pub(super) fn orphan_blocks_planned(&self) -> usize {
        if !self.orphans_changed {
            return 0;
        }
        self.orphans.len().div_ceil(orphan_list_capacity(self.block_bytes))
    }

    /// Writes the orphan chain (tail first, so each block knows its successor's crc) if it
    /// changed; returns the old chain's blocks (they join pending like other replaced
    /// allocator blocks).
    pub(super) fn write_orphans(
        &mut self,
        gen: u64,
        next_addr: &mut dyn FnMut() -> u64,
        blocks: &mut Vec<(u64, AlignedBuf)>,
    ) -> Vec<u64> {
        if !self.orphans_changed {
            return Vec::new();
        }
        let old = self.orphan_lists.iter().map(|p| p.address()).collect();
        let pieces: Vec<&[ChildPtr]> =
            self.orphans.chunks(orphan_list_capacity(self.block_bytes)).collect();
        let addrs: Vec<u64> = pieces.iter().map(|_| next_addr()).collect();
        let mut ptrs = vec![ChildPtr::NULL; pieces.len()];
        let mut next = ChildPtr::NULL;
        for (i, piece) in pieces.iter().enumerate().rev() {
            let mut buf = AlignedBuf::zeroed(self.block_bytes as usize, self.block_bytes as usize);
            {
                let mut list = OrphanList::init(&mut buf[..], addrs[i], gen);
                list.set_next(next);
                for root in *piece {
                    list.push(*root).expect("orphan list sized by its capacity");
                }
            }
            seal_block(&mut buf);
            next = ChildPtr::new(addrs[i], gen, arbor_format::block_crc(&buf));
            ptrs[i] = next;
            blocks.push((addrs[i], buf));
        }
        self.orphan_lists = ptrs;
        self.orphans_changed = false;
        old
    }

    /// Head of the orphan chain as last persisted.
    pub fn orphan_root(&self) -> ChildPtr {
        self.orphan_lists.first().copied().unwrap_or(ChildPtr::NULL)
    }

    /// Reads the orphan chain of a durable superblock. Untrusted: every block is verified
    /// against its pointer and decoded; the chain may not repeat a block; every root must lie
    /// inside the device; the list blocks must be allocated.
    pub fn load_orphans(&mut self, head: ChildPtr, read: &mut ReadBlock<'_>) -> Result<()> {
        let mut seen = HashSet::new();
        let mut ptr = head;
        while !ptr.is_null() {
            let addr = ptr.address();
            if !seen.insert(addr) {
                return Err(Error::corrupt(addr, "orphan lists form a cycle"));
            }
            if addr < self.first_data || addr >= self.bitmap.block_count() {
                return Err(Error::corrupt(addr, "orphan list outside the device"));
            }
            if !self.bitmap.is_set(addr) {
                return Err(Error::corrupt(addr, "orphan list block marked free"));
            }
            let buf = read(ptr)?;
            let list =
                OrphanList::decode(&buf[..]).map_err(|e| Error::corrupt(addr, e.to_string()))?;
            for i in 0..list.len() {
                let root = list.get(i);
                if root.address() < self.first_data || root.address() >= self.bitmap.block_count() {
                    return Err(Error::corrupt(addr, "orphan root outside the device"));
                }
                self.orphans.push(root);
            }
            self.orphan_lists.push(ptr);
            ptr = list.next();
        }
        Ok(())
    }
}
