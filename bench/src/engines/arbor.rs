//! Arbor. Writes are durable (`Durability::Immediate`) single transactions; writers on several
//! threads each open their own `WriteTxn` (one at a time) and share device flushes.
//!
//! Every read goes through [`ArborEngine::read`]. Today that is a write transaction, aborted
//! after reading: reads are serialized with writers and cannot be held open. When
//! `Db::snapshot` lands, switching is a few lines, all in this file:
//! 1. implement [`ArborReader`] for `arbor::Tree` (the same three calls as for `WriteTree`);
//! 2. in `read`, take `self.db.snapshot()` and `snap.tree(TREE)?` instead of `begin_write`;
//! 3. set [`SNAPSHOTS`] to `true` and return a held `Snapshot` from `hold_reader`.

use arbor::{Db, Durability, Options, WriteTree};

use super::{Engine, HeldReader, Store};
use crate::data::{Key, Value};
use crate::{ctx, BenchResult};

const TREE: &str = "bench";

/// True once reads run on snapshots: concurrent readers and held readers become possible.
const SNAPSHOTS: bool = false;
const NEEDS_SNAPSHOTS: &str = "n/a (needs snapshots)";

/// Clean-block cache: redb's default cache size, so the two run with the same budget.
pub const CACHE_BYTES: u64 = 1 << 30;

/// The read calls the workloads make: implemented by every kind of tree handle Arbor has.
pub trait ArborReader {
    fn get(&self, key: &[u8]) -> arbor::Result<Option<Vec<u8>>>;
    /// Visits up to `len` entries from `start` on; returns how many had a value.
    fn scan(&self, start: &[u8], len: usize) -> arbor::Result<u64>;
}

impl ArborReader for WriteTree<'_, '_> {
    fn get(&self, key: &[u8]) -> arbor::Result<Option<Vec<u8>>> {
        WriteTree::get(self, key)
    }

    fn scan(&self, start: &[u8], len: usize) -> arbor::Result<u64> {
        let mut seen = 0;
        for item in self.range(start..)?.take(len) {
            let (_k, v) = item?;
            seen += u64::from(!v.is_empty());
        }
        Ok(seen)
    }
}

pub struct ArborEngine {
    db: Db,
}

impl ArborEngine {
    pub fn create(store: &Store) -> BenchResult<ArborEngine> {
        let opts =
            Options { cache_bytes: CACHE_BYTES, force_create: store.erase, ..Options::default() };
        let db = Db::create(&store.path, opts).map_err(ctx("Db::create"))?;
        Ok(ArborEngine { db })
    }

    /// The store, for micro-benchmarks that drive the public API directly.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Runs `f` on a read view of the benchmark tree: the one read path of this adapter.
    pub fn read<T>(&self, f: impl FnOnce(&dyn ArborReader) -> BenchResult<T>) -> BenchResult<T> {
        let mut tx = self.db.begin_write().map_err(ctx("begin_write"))?;
        let out = f(&tx.tree(TREE).map_err(ctx("tree"))?)?;
        tx.abort().map_err(ctx("abort"))?;
        Ok(out)
    }

    fn write<T>(&self, f: impl FnOnce(&mut WriteTree<'_, '_>) -> BenchResult<T>) -> BenchResult<T> {
        let mut tx = self.db.begin_write().map_err(ctx("begin_write"))?;
        let out = f(&mut tx.tree(TREE).map_err(ctx("tree"))?)?;
        tx.set_durability(Durability::Immediate);
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
        if SNAPSHOTS {
            Ok(())
        } else {
            Err(NEEDS_SNAPSHOTS.into())
        }
    }

    fn hold_reader(&self) -> Result<Box<dyn HeldReader + '_>, String> {
        Err(NEEDS_SNAPSHOTS.into())
    }

    fn flushes(&self) -> Option<u64> {
        Some(self.db.stats().flushes)
    }

    fn note(&self) -> Option<String> {
        let s = self.db.stats();
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
