//! The state every handle of one open store shares: the read path, the writer behind its
//! lock, the snapshot registry, the journal and the checkpoint pipeline, and the figures
//! `Db::stats` shows while a transaction holds the writer. Also how a commit becomes
//! durable (design.md §11.3–§11.6).

use crate::durable::journal::Journal;
use crate::durable::pipeline::{Failure, Flush, Pipeline};
use crate::mvcc::Registry;
use crate::options::{Durability, Options};
use crate::store::Store;
use crate::sync::{AtomicBool, AtomicU64, Mutex, MutexGuard};
use crate::txn::checkpointer::Checkpointer;
use crate::writer::{Writer, WriterFigures};
use crate::Result;

/// Makes the handle fail-stop (`Error::Poisoned`) if a panic unwinds out of a journal
/// write: forgotten on the normal path.
struct PanicFailsHandle<'p>(&'p Pipeline);

impl Drop for PanicFailsHandle<'_> {
    fn drop(&mut self) {
        self.0.fail_on_panic("inside the engine while it wrote the journal");
    }
}

pub(crate) struct Shared {
    pub store: Store,
    pub writer: Mutex<Writer>,
    /// Published root record and outstanding snapshots.
    pub registry: Registry,
    /// The writer's figures as of the last commit or abort, for `stats` while a write
    /// transaction holds the writer.
    pub figures: Mutex<WriterFigures>,
    /// Checkpoints (generation write-outs).
    pub pipeline: Pipeline,
    /// Commit records.
    pub journal: Journal,
    /// The background checkpoint thread's controls (design.md §11.6).
    pub checkpointer: Checkpointer,
    pub opts: Options,
    pub uuid: [u8; 16],
    pub rejected_superblock_copies: u32,
    /// Journal records applied at open.
    pub records_replayed: AtomicU64,
    /// Numbers write transactions, so a savepoint is only used with its own.
    pub txn_ids: AtomicU64,
    /// Set when the last `Db` handle dropped: snapshot reads return `Error::Closed` from
    /// then on, even while a value guard or a range's block keeps this memory alive.
    pub closed: AtomicBool,
}

impl Shared {
    /// The writer, unless a panic made the handle fail-stop (`Pipeline::lock_writer`).
    pub(crate) fn lock_writer(&self) -> Result<MutexGuard<'_, Writer>> {
        self.pipeline.lock_writer(&self.writer)
    }

    /// Checkpoints generation `target` with the engine's freeze and write-out (see
    /// [`Pipeline::hand_off`]).
    pub(crate) fn make_durable<'a>(
        &'a self,
        guard: Option<MutexGuard<'a, Writer>>,
        target: u64,
        wait: bool,
    ) -> Result<()> {
        let work = Flush { store: &self.store, uuid: self.uuid, journal: &self.journal };
        self.pipeline.hand_off(&self.writer, guard, &work, target, wait)
    }

    /// Checkpoints every commit so far (waiting for one that runs).
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let target = self.lock_writer()?.last_commit_gen;
        self.make_durable(None, target, true)
    }

    /// Checkpoints the open generation even if no commit changed it: open's checkpoint after
    /// a replay, which moves the replay start past the records it applied.
    pub(crate) fn checkpoint_open_generation(&self) -> Result<()> {
        let mut w = self.lock_writer()?;
        let target = w.gen();
        w.last_commit_gen = target;
        self.make_durable(Some(w), target, true)
    }

    /// Makes commit `seq` durable through the journal (`wait == false`: returns at once if
    /// another leader is writing). A journal failure makes the handle fail-stop.
    pub(crate) fn journal_durable(&self, seq: u64, wait: bool) -> Result<()> {
        let guard = PanicFailsHandle(&self.pipeline);
        let result = self.journal.make_durable(&self.store, seq, wait, &|| self.checkpoint());
        std::mem::forget(guard);
        if let Err(e) = &result {
            self.pipeline.state().fail(Failure::Io(e.with_sources()));
        }
        result
    }

    /// The durable end of a commit whose seq `seq` was just published with `w` held:
    /// journal its record (or, for a transaction too large for one, checkpoint it), wait as
    /// `durability` says, then start a checkpoint if one is due. Returns whether the commit
    /// is durable.
    pub(crate) fn commit_durably<'a>(
        &'a self,
        mut w: MutexGuard<'a, Writer>,
        seq: u64,
        durability: Durability,
    ) -> Result<bool> {
        let gen = w.gen();
        w.last_commit_gen = gen;
        let over_dirty = w.dirty.bytes > self.opts.dirty_max_bytes;
        // Freed blocks come back only through checkpoints (the freeing generation and the
        // next durable, design.md §10.13): short of space, take them before the store grows.
        let low_space = self.reclaim_due(&w);
        let journaled = match w.record.ops() {
            // Replay at open: the record is in the journal already; checkpoints from now
            // on (they freeze under the writer lock, held here) start replay after it.
            _ if self.journal.replaying() => {
                self.journal.replay_applied();
                true
            }
            Some(ops) => {
                self.journal.append(seq, ops);
                true
            }
            None => {
                self.journal.append_checkpointed(seq);
                false
            }
        };
        w.record.reset();
        let durable = if self.journal.replaying() {
            drop(w);
            false
        } else if !journaled {
            // A large transaction commits through a checkpoint (design.md §11.5).
            self.make_durable(Some(w), gen, true)?;
            true
        } else {
            drop(w);
            match durability {
                Durability::Immediate => {
                    self.journal_durable(seq, true)?;
                    true
                }
                Durability::Eventual => {
                    if self.journal.eventual_due(self.opts.eventual_interval).is_some() {
                        self.journal_durable(seq, false)?;
                    }
                    self.journal.is_durable(seq)
                }
                Durability::None => false,
            }
        };
        if low_space {
            // In this thread, waiting: commits must not outrun the checkpoints that give
            // them space, or the store grows anyway.
            self.make_durable(None, gen, true)?;
        } else if over_dirty || self.journal.wants_checkpoint() {
            self.checkpoint_soon(gen)?;
        }
        Ok(durable)
    }

    /// Whether this commit checkpoints to give freed blocks back (design.md §11.6): less
    /// than 1/8 of the device as it is now is free (not counting the room a file can still
    /// grow by) and blocks no snapshot holds wait for checkpoints. On a device that cannot
    /// grow, any number of them; on a file that can, at least as many as are free (the
    /// commits would run out before they come back) and at least 1/8 of a growth step
    /// (fewer are not worth two checkpoints: a step gives more, once).
    fn reclaim_due(&self, w: &Writer) -> bool {
        let (free, waiting) = (w.alloc.free_blocks(), w.alloc.reclaimable_blocks());
        if waiting == 0 || free.saturating_mul(8) >= w.alloc.block_count() {
            return false;
        }
        let dev = &self.store.dev;
        let len = dev.len_bytes();
        if dev.max_len_bytes() <= len {
            return true;
        }
        let step = len.min(self.opts.file_grow_step_bytes) / u64::from(self.store.block_bytes);
        waiting >= free && waiting.saturating_mul(8) >= step
    }

    /// A checkpoint is due: the background thread takes it, or without one (no
    /// `checkpoint_interval`) this thread leads it unless another one is running.
    fn checkpoint_soon(&self, gen: u64) -> Result<()> {
        if self.checkpointer.wake() {
            return Ok(());
        }
        self.make_durable(None, gen, false)
    }
}
