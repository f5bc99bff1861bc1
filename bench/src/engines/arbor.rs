//! Arbor. Writes are single transactions committed with the run's durability
//! (`Durability::Immediate` unless `--durability` says otherwise); writers on several threads
//! each open their own `WriteTxn` (one at a time) and share device flushes.
//!
//! Every read goes through [`ArborEngine::read`]: a snapshot (`Db::snapshot`), so readers
//! run concurrently with each other and with the writer, and one can be held open.
//!
//! `reopen` (the cold-read rows) drops the `Db` (a clean close) and opens the store again
//! with `Db::open`: a new `Db` has an empty cache, and Arbor reads with O_DIRECT, so nothing
//! of the store is left in memory. The `Db::stats` counters start again from zero.

use std::path::PathBuf;

use arbor::{Db, Durability, Options, Snapshot, Tree, WriteTree};
use arbor_format::constants::SUPERBLOCK_BYTES;

use super::{Engine, HeldReader, Store, Writes};
use crate::config;
use crate::data::{Key, Value};
use crate::{ctx, BenchResult};

const TREE: &str = "bench";

/// Buffer pool: redb's default cache size, so the two run with the same budget.
pub const CACHE_BYTES: u64 = 1 << 30;

/// The read calls the workloads make: implemented by every kind of tree handle Arbor has.
pub trait ArborReader {
    /// The value, lent without a copy (as redb's `AccessGuard` and LMDB's slices are).
    fn get(&self, key: &[u8]) -> arbor::Result<Option<arbor::Guard>>;
    /// Visits up to `len` entries from `start` on; returns how many had a value.
    fn scan(&self, start: &[u8], len: usize) -> arbor::Result<u64>;
    /// `Tree::get_many`: the keys descend together, each level's missing blocks read in one
    /// device batch.
    fn get_many(&self, keys: &[Key]) -> arbor::Result<Vec<Option<Vec<u8>>>>;
}

impl ArborReader for Tree {
    fn get(&self, key: &[u8]) -> arbor::Result<Option<arbor::Guard>> {
        Tree::get(self, key)
    }

    /// Borrowed entries (`Range::next_ref`), as LMDB's cursor lends slices.
    fn scan(&self, start: &[u8], len: usize) -> arbor::Result<u64> {
        let mut seen = 0;
        let mut range = self.range(start..)?;
        for _ in 0..len {
            let Some(item) = range.next_ref() else { break };
            let (_k, v) = item?;
            seen += u64::from(!v.is_empty());
        }
        Ok(seen)
    }

    fn get_many(&self, keys: &[Key]) -> arbor::Result<Vec<Option<Vec<u8>>>> {
        Tree::get_many(self, keys)
    }
}

/// A snapshot held open for the long-reader experiment.
struct ArborHeld(Snapshot);

impl HeldReader for ArborHeld {
    fn get(&self, key: &Key) -> BenchResult<Option<Vec<u8>>> {
        let tree = self.0.tree(TREE).map_err(ctx("tree"))?.ok_or("benchmark tree missing")?;
        Ok(tree.get(key).map_err(ctx("get"))?.map(arbor::Guard::into_vec))
    }
}

pub struct ArborEngine {
    /// `None` only while `reopen` has it closed (or after a reopen that failed).
    db: Option<Db>,
    durability: Durability,
    path: PathBuf,
    opts: Options,
}

impl ArborEngine {
    pub fn create(store: &Store, durability: config::Durability) -> BenchResult<ArborEngine> {
        let durability = match durability {
            config::Durability::Immediate => Durability::Immediate,
            config::Durability::Eventual => Durability::Eventual,
            config::Durability::None => Durability::None,
        };
        let opts = Options {
            cache_bytes: CACHE_BYTES,
            overwrite_existing: store.erase,
            ..Options::default()
        };
        let db = Db::create(&store.path, opts.clone()).map_err(ctx("Db::create"))?;
        Ok(ArborEngine { db: Some(db), durability, path: store.path.clone(), opts })
    }

    /// The store, for micro-benchmarks that drive the public API directly; `Err` after a
    /// failed `reopen`.
    pub fn db(&self) -> BenchResult<&Db> {
        self.db.as_ref().ok_or_else(|| "store closed (reopen failed)".to_string())
    }

    /// Runs `f` on a read view of the benchmark tree: the one read path of this adapter.
    pub fn read<T>(&self, f: impl FnOnce(&dyn ArborReader) -> BenchResult<T>) -> BenchResult<T> {
        let snap = self.db()?.snapshot().map_err(ctx("snapshot"))?;
        let tree = snap.tree(TREE).map_err(ctx("tree"))?.ok_or("benchmark tree missing")?;
        f(&tree)
    }

    fn write<T>(&self, f: impl FnOnce(&mut WriteTree<'_, '_>) -> BenchResult<T>) -> BenchResult<T> {
        let mut tx = self.db()?.begin_write().map_err(ctx("begin_write"))?;
        let out = f(&mut tx.tree(TREE).map_err(ctx("tree"))?)?;
        tx.set_durability(self.durability);
        tx.commit().map_err(ctx("commit"))?;
        Ok(out)
    }
}

impl Engine for ArborEngine {
    fn insert_txn(&self, keys: &[Key], values: &[Value]) -> BenchResult<()> {
        self.write(|t| {
            for (k, v) in keys.iter().zip(values) {
                t.insert(k, v).map_err(ctx("insert"))?;
            }
            Ok(())
        })
    }

    fn remove_txn(&self, keys: &[Key]) -> BenchResult<u64> {
        self.write(|t| {
            let mut removed = 0;
            for k in keys {
                removed += u64::from(t.remove(k).map_err(ctx("remove"))?.is_some());
            }
            Ok(removed)
        })
    }

    fn get_many(&self, keys: &[Key]) -> BenchResult<u64> {
        self.read(|t| {
            let mut bytes = 0;
            for k in keys {
                if let Some(v) = t.get(k).map_err(ctx("get"))? {
                    bytes += v.len() as u64;
                }
            }
            Ok(bytes)
        })
    }

    fn scan_many(&self, starts: &[Key], len: usize) -> BenchResult<u64> {
        self.read(|t| {
            let mut seen = 0;
            for k in starts {
                seen += t.scan(k, len).map_err(ctx("range"))?;
            }
            Ok(seen)
        })
    }

    fn concurrent_reads(&self) -> Result<(), String> {
        Ok(())
    }

    /// `Tree::get_many` on the snapshot's tree, `batch` keys per call.
    fn get_batched(&self, keys: &[Key], batch: usize) -> BenchResult<u64> {
        self.read(|t| {
            let mut bytes = 0;
            for chunk in keys.chunks(batch.max(1)) {
                let values = t.get_many(chunk).map_err(ctx("get_many"))?;
                bytes += values.iter().flatten().map(|v| v.len() as u64).sum::<u64>();
            }
            Ok(bytes)
        })
    }

    fn batched_reads(&self) -> Result<(), String> {
        Ok(())
    }

    fn reopen(&mut self, while_closed: &mut dyn FnMut() -> BenchResult<()>) -> BenchResult<()> {
        drop(self.db.take());
        let between = while_closed();
        let db = Db::open(&self.path, self.opts.clone()).map_err(ctx("Db::open"))?;
        self.db = Some(db);
        between
    }

    /// O_DIRECT: a new `Db` is cold.
    fn page_cache(&self) -> bool {
        false
    }

    fn hold_reader(&self) -> Result<Box<dyn HeldReader + '_>, String> {
        let snap = self.db()?.snapshot().map_err(|e| e.to_string())?;
        Ok(Box::new(ArborHeld(snap)))
    }

    fn flushes(&self) -> Option<u64> {
        Some(self.db.as_ref()?.stats().flushes)
    }

    /// Journal blocks (both copies), tree and allocator blocks (checkpoints and early
    /// write-back) and the two superblock copies of each checkpoint (`SUPERBLOCK_BYTES`
    /// each; a superblock goes out alone after the checkpoint's blocks are flushed).
    fn writes(&self) -> Result<Writes, String> {
        let s = self.db()?.stats();
        let blocks = s.journal_blocks_written + s.blocks_written;
        let superblocks = 2 * s.checkpoints;
        Ok(Writes {
            blocks: blocks + superblocks,
            bytes: blocks * u64::from(s.block_bytes) + superblocks * SUPERBLOCK_BYTES as u64,
            journal_batches: s.journal_batches,
            journal_records: s.journal_records,
            checkpoints: s.checkpoints,
        })
    }

    /// `Db::flush`: a checkpoint of everything committed.
    fn settle(&self) -> BenchResult<()> {
        self.db()?.flush().map_err(ctx("flush"))
    }

    fn used_bytes(&self) -> Option<u64> {
        let s = self.db.as_ref()?.stats();
        Some((s.blocks_total - s.blocks_free) * u64::from(s.block_bytes))
    }

    fn note(&self) -> Option<String> {
        let s = self.db.as_ref()?.stats();
        let live = (s.blocks_total - s.blocks_free) * u64::from(s.block_bytes);
        Some(format!(
            "{:.1} MB live in {} B blocks ({} total, {} free); cache {:.1} MB, {} block reads, \
             {} cache hits; {} flushes, {} blocks written",
            live as f64 / 1e6,
            s.block_bytes,
            s.blocks_total,
            s.blocks_free,
            s.cache_bytes as f64 / 1e6,
            s.block_reads,
            s.cache_hits,
            s.flushes,
            s.blocks_written
        ))
    }
}
