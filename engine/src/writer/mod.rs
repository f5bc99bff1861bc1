//! The single writer's state below the tree, in parts that functions borrow separately:
//! the dirty set (`dirty.rs`) and its edits (`edit.rs`), the allocator, what outstanding
//! snapshots still need (`retention.rs`) and its bound (`bound.rs`), the named trees, the
//! transaction scratch (`scratch.rs`) and savepoints inside it (`savepoint.rs`), and early
//! write-back (`writeback.rs`). [`Writer`] only groups them behind the writer lock.

pub(crate) mod bound;
mod dirty;
mod edit;
mod record;
pub(crate) mod retention;
mod savepoint;
mod scratch;
mod writeback;

use std::collections::{BTreeMap, BTreeSet};

use arbor_format::constants::TREE_ID_FIRST_USER;
use arbor_format::journal::RecordLimits;
use arbor_format::ChildPtr;

use crate::alloc::Allocator;
use crate::store::Store;
use crate::writer::retention::History;

pub(crate) use dirty::{Dirty, DirtySet, Prefetch};
pub(crate) use edit::{Edit, Need};
pub(crate) use record::TxnRecord;
pub(crate) use savepoint::Mark;
pub(crate) use scratch::{PathElem, TxnScratch};

/// A named tree's metadata as the writer sees it in the open transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TreeMeta {
    pub id: u64,
    pub root: ChildPtr,
    pub entries: u64,
}

/// The named trees as the open transaction sees them.
pub(crate) struct Trees {
    /// Catalog root in the open transaction.
    pub catalog: ChildPtr,
    /// Every named tree (loaded from the catalog at open; the catalog is rewritten from the
    /// changed entries at commit).
    pub map: BTreeMap<Vec<u8>, TreeMeta>,
    /// Names whose metadata changed since the last commit (written to the catalog then).
    pub changed: BTreeSet<Vec<u8>>,
    pub next_id: u64,
}

pub(crate) struct Writer {
    pub dirty: DirtySet,
    pub alloc: Allocator,
    /// What snapshots may still need: log order, retained images, pinned runs.
    pub hist: History,
    /// The last seq handed out.
    pub seq: u64,
    pub trees: Trees,
    pub txn: TxnScratch,
    /// Blocks kept free for commit-time metadata and for removals, so that a full store can
    /// still commit and can still delete (see `Edit::reserve_for`).
    pub reserve_blocks: u64,
    /// `Options::fill_siblings`.
    pub fill_siblings: bool,
    /// Generation of the last commit (what `Db::flush` makes durable).
    pub last_commit_gen: u64,
    /// The open transaction's journal record.
    pub record: TxnRecord,
}

impl Writer {
    pub(crate) fn new(gen: u64, alloc: Allocator, catalog: ChildPtr) -> Writer {
        let alloc_block_bytes = alloc.block_bytes();
        Writer {
            dirty: DirtySet::new(gen),
            alloc,
            hist: History::default(),
            seq: 0,
            trees: Trees {
                catalog,
                map: BTreeMap::new(),
                changed: BTreeSet::new(),
                next_id: TREE_ID_FIRST_USER,
            },
            txn: TxnScratch::default(),
            reserve_blocks: 64,
            fill_siblings: false,
            last_commit_gen: 0,
            // The store sets the real limit (`Options::journal_record_max`) after open.
            record: TxnRecord::new(RecordLimits::new(alloc_block_bytes, 0)),
        }
    }

    /// The open generation.
    pub(crate) fn gen(&self) -> u64 {
        self.dirty.gen
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Cuts the file's unused growth tail at a checkpoint, before the allocator persists
    /// (design.md §10.16): when the device grew more than once since the last checkpoint (a
    /// bulk load, a large transaction), the free blocks past the last block in use, less the
    /// reserve, go back to the filesystem. Pending and held blocks count as in use, so no
    /// block a durable superblock or a snapshot reaches is cut. A single growth is left
    /// alone: the commits that needed it will fill it, and a cut would only make the next
    /// growth zero it again.
    pub(crate) fn trim_tail(&mut self, s: &Store) {
        let count = self.alloc.block_count();
        let in_use = self.alloc.last_allocated().map_or(0, |last| last + 1);
        let keep = in_use + self.reserve_blocks;
        if self.alloc.take_growths() < 2 || keep >= count {
            return;
        }
        let block_bytes = u64::from(s.block_bytes);
        // The cut is an economy, not a commit's duty: a device that refuses it keeps its
        // length, and the checkpoint goes on.
        let len = match s.dev.shrink(keep * block_bytes) {
            Ok(len) => len,
            Err(e) => {
                log::warn!("{}: cutting the unused tail failed: {e}", s.dev.describe());
                return;
            }
        };
        let new_count = len / block_bytes;
        assert!(new_count >= keep, "the device was cut to {new_count} blocks, below {keep}");
        self.alloc.shrink(new_count, self.gen());
    }

    /// The parts a tree change borrows.
    pub(crate) fn edit(&mut self) -> Edit<'_> {
        Edit {
            dirty: &mut self.dirty,
            alloc: &mut self.alloc,
            seq: &mut self.seq,
            hist: &mut self.hist,
            txn: &mut self.txn,
            reserve_blocks: self.reserve_blocks,
            fill_siblings: self.fill_siblings,
        }
    }
}

/// The writer's part of `Stats`.
#[derive(Clone, Copy, Default)]
pub(crate) struct WriterFigures {
    pub generation_open: u64,
    pub blocks_total: u64,
    pub blocks_free: u64,
    pub largest_free_run: u64,
    pub trees: usize,
    pub dirty_bytes: u64,
    pub modlog_bytes: u64,
    pub retained_bytes: u64,
    pub pinned_blocks: u64,
    pub orphans: usize,
}

impl WriterFigures {
    pub(crate) fn largest_free_run(&self) -> u64 {
        self.largest_free_run
    }
}

impl Writer {
    /// The writer's figures; the largest free run (a bitmap scan) only when `full`, else
    /// `largest_free_run` as last measured.
    pub(crate) fn figures(&self, full: bool, largest_free_run: u64) -> WriterFigures {
        WriterFigures {
            generation_open: self.gen(),
            blocks_total: self.alloc.block_count(),
            blocks_free: self.alloc.free_blocks(),
            largest_free_run: if full { self.alloc.largest_free_run() } else { largest_free_run },
            trees: self.trees.map.len(),
            dirty_bytes: self.dirty.bytes,
            modlog_bytes: self.hist.log_bytes,
            retained_bytes: self.hist.retained_bytes,
            pinned_blocks: self.hist.pinned_blocks,
            orphans: self.alloc.orphans().len(),
        }
    }
}
