//! The state every handle of one open store shares: the read path, the writer behind its
//! lock, the snapshot registry, the durability pipeline, and the figures `Db::stats` shows
//! while a transaction holds the writer.

use crate::durable::pipeline::{Flush, Pipeline};
use crate::mvcc::Registry;
use crate::options::Options;
use crate::store::Store;
use crate::sync::{Mutex, MutexGuard};
use crate::writer::Writer;
use crate::Result;

pub(crate) struct Shared {
    pub store: Store,
    pub writer: Mutex<Writer>,
    /// Published root record and outstanding snapshots.
    pub registry: Registry,
    /// The writer's figures as of the last commit or abort, for `stats` while a write
    /// transaction holds the writer.
    pub figures: Mutex<WriterFigures>,
    pub pipeline: Pipeline,
    pub opts: Options,
    pub uuid: [u8; 16],
    pub rejected_superblock_copies: u32,
    pub recovery_fallbacks: u32,
}

impl Shared {
    /// Makes generation `target` durable with the engine's freeze and write-out (see
    /// [`Pipeline::hand_off`]).
    pub(crate) fn make_durable<'a>(
        &'a self,
        guard: Option<MutexGuard<'a, Writer>>,
        target: u64,
        wait: bool,
    ) -> Result<()> {
        let work = Flush { store: &self.store, uuid: self.uuid };
        self.pipeline.hand_off(&self.writer, guard, &work, target, wait)
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
