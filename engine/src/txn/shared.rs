//! The state every handle of one open store shares: the read path, the writer behind its
//! lock, the snapshot registry, the durability pipeline, and the figures `Db::stats` shows
//! while a transaction holds the writer.

use crate::durable::pipeline::{Flush, Pipeline};
use crate::mvcc::Registry;
use crate::options::Options;
use crate::store::Store;
use crate::sync::{AtomicU64, Mutex, MutexGuard};
use crate::writer::{Writer, WriterFigures};
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
    /// Numbers write transactions, so a savepoint is only used with its own.
    pub txn_ids: AtomicU64,
}

impl Shared {
    /// The writer, unless a panic made the handle fail-stop (`Pipeline::lock_writer`).
    pub(crate) fn lock_writer(&self) -> Result<MutexGuard<'_, Writer>> {
        self.pipeline.lock_writer(&self.writer)
    }

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
