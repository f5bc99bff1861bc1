//! `arbor stat`: the shape of every tree and the fragmentation of free space, for the
//! checkpoint `Db::open` would recover to, read from the device without opening the store
//! (the journal's records after it are read only to refuse where open would).

use arbor_format::constants::check_block_bytes;
use arbor_format::superblock::Superblock;
use arbor_format::ChildPtr;

use super::{Problem, Progress, Source, TreeStat, Walk};
use crate::alloc::Allocator;
use crate::durable::{journal_scan, recovery};
use crate::io::BlockDevice;
use crate::store::Store;
use crate::{Error, Result};

const STAT_CACHE_BYTES: u64 = 1 << 20;

/// Free space as the allocator sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Space {
    /// The store's block size.
    pub block_bytes: u32,
    /// Blocks the store manages (the superblock area included).
    pub block_count: u64,
    /// Blocks the superblock area takes.
    pub reserved_blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Blocks freed by the newest generation: free once a later generation is durable.
    pub pending_blocks: u64,
    /// Longest run of contiguous free blocks.
    pub largest_free_run: u64,
    /// Number of separate free runs (1 = unfragmented).
    pub free_runs: u64,
}

impl Space {
    /// Allocated blocks outside the superblock area (trees, overflow, allocator, pending).
    pub fn used_blocks(&self) -> u64 {
        self.block_count.saturating_sub(self.free_blocks).saturating_sub(self.reserved_blocks)
    }

    fn of(alloc: &Allocator, block_bytes: u32) -> Space {
        let block_count = alloc.block_count();
        let mut free_runs = 0;
        let mut in_run = false;
        for a in 0..block_count {
            let free = !alloc.is_allocated(a);
            if free && !in_run {
                free_runs += 1;
            }
            in_run = free;
        }
        Space {
            block_bytes,
            block_count,
            reserved_blocks: alloc.first_data().min(block_count),
            free_blocks: alloc.free_blocks(),
            pending_blocks: alloc.pending_blocks().iter().map(|(_, n, _)| n).sum(),
            largest_free_run: alloc.largest_free_run(),
            free_runs,
        }
    }
}

/// Statistics of a store.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StoreStat {
    /// The generation the figures describe (the newest durable one).
    pub generation: u64,
    /// The store's block size.
    pub block_bytes: u32,
    /// The device's length.
    pub device_bytes: u64,
    /// The catalog first (named `(catalog)`), then every named tree.
    pub trees: Vec<TreeStat>,
    /// Free space.
    pub space: Space,
    /// Blocks the walk could not read (the figures leave them out).
    pub problems: Vec<Problem>,
}

/// Loads the allocator of superblock `sb` (read-only) and summarises free space.
pub fn space_at(dev: Box<dyn BlockDevice>, sb: &Superblock) -> Result<Space> {
    let block_bytes = sb.block_bytes();
    check_block_bytes(block_bytes).map_err(|e| Error::corrupt(0, e.to_string()))?;
    let s = Store::new(dev, block_bytes, STAT_CACHE_BYTES);
    let mut read = |ptr: ChildPtr| s.read_uncached(ptr);
    let alloc = Allocator::load_superblock(sb, sb.generation(), &mut read)?;
    crate::durable::recovery::fits_device(&alloc, s.dev.len_bytes() / u64::from(block_bytes))?;
    Ok(Space::of(&alloc, block_bytes))
}

/// Walks every tree of the generation `Db::open` would recover to.
pub fn stat_device(dev: Box<dyn BlockDevice>, progress: &mut Progress<'_>) -> Result<StoreStat> {
    let found = crate::durable::superblock::read_superblocks(dev.as_ref())?;
    let block_bytes = found.copies.first().map_or(0, |(_, sb)| sb.block_bytes());
    check_block_bytes(block_bytes).map_err(|e| Error::corrupt(0, e.to_string()))?;
    let s = Store::new(dev, block_bytes, STAT_CACHE_BYTES);
    let opened = recovery::recover(&s, found)?;
    // Refuse where `Db::open` does: a journal damaged past the checkpoint (design.md §11.7).
    journal_scan::scan(&s, opened.journal, opened.sb.uuid(), opened.sb.replay_lsn())?;
    let mut tick = |n: u64| progress(n);
    let mut walk = Walk::new(Source::Device, &s, &mut tick);
    walk.tree(b"(catalog)", 0, opened.sb.catalog_root(), true)?;
    let report = walk.report;
    Ok(StoreStat {
        generation: opened.sb.generation(),
        block_bytes,
        device_bytes: s.dev.len_bytes(),
        trees: report.tree_stats,
        space: Space::of(&opened.alloc, block_bytes),
        problems: report.findings,
    })
}
