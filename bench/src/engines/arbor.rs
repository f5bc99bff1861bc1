//! Arbor. Reads go through a write transaction (then `abort`) until snapshots land.

use std::path::Path;

use arbor::{Db, Durability, Options};

use super::Engine;
use crate::data::{Key, Value};
use crate::{ctx, BenchResult};

const TREE: &str = "bench";

pub struct ArborEngine {
    db: Db,
}

impl ArborEngine {
    pub fn create(dir: &Path) -> BenchResult<ArborEngine> {
        let db = Db::create(dir.join("arbor.db"), Options::default()).map_err(ctx("Db::create"))?;
        Ok(ArborEngine { db })
    }
}

impl Engine for ArborEngine {
    fn name(&self) -> &'static str {
        "arbor"
    }

    fn insert_txn(&mut self, keys: &[Key], values: &[Value]) -> BenchResult<()> {
        let mut tx = self.db.begin_write().map_err(ctx("begin_write"))?;
        {
            let mut t = tx.tree(TREE).map_err(ctx("tree"))?;
            for (k, v) in keys.iter().zip(values) {
                t.insert(k, v).map_err(ctx("insert"))?;
            }
        }
        tx.set_durability(Durability::Immediate);
        tx.commit().map_err(ctx("commit"))?;
        Ok(())
    }

    fn remove_txn(&mut self, keys: &[Key]) -> BenchResult<u64> {
        let mut tx = self.db.begin_write().map_err(ctx("begin_write"))?;
        let mut removed = 0;
        {
            let mut t = tx.tree(TREE).map_err(ctx("tree"))?;
            for k in keys {
                removed += u64::from(t.remove(k).map_err(ctx("remove"))?.is_some());
            }
        }
        tx.set_durability(Durability::Immediate);
        tx.commit().map_err(ctx("commit"))?;
        Ok(removed)
    }

    fn get_many(&mut self, keys: &[Key]) -> BenchResult<u64> {
        let mut tx = self.db.begin_write().map_err(ctx("begin_write"))?;
        let mut bytes = 0;
        {
            let t = tx.tree(TREE).map_err(ctx("tree"))?;
            for k in keys {
                if let Some(v) = t.get(k).map_err(ctx("get"))? {
                    bytes += v.len() as u64;
                }
            }
        }
        tx.abort().map_err(ctx("abort"))?;
        Ok(bytes)
    }

    fn scan_many(&mut self, starts: &[Key], len: usize) -> BenchResult<u64> {
        let mut tx = self.db.begin_write().map_err(ctx("begin_write"))?;
        let mut seen = 0;
        {
            let t = tx.tree(TREE).map_err(ctx("tree"))?;
            for k in starts {
                for r in t.range(k.as_slice()..).map_err(ctx("range"))?.take(len) {
                    let (_k, v) = r.map_err(ctx("range next"))?;
                    seen += u64::from(!v.is_empty());
                }
            }
        }
        tx.abort().map_err(ctx("abort"))?;
        Ok(seen)
    }

    fn flushes(&self) -> Option<u64> {
        Some(self.db.stats().flushes)
    }

    fn note(&self) -> Option<String> {
        let s = self.db.stats();
        let live = (s.blocks_total - s.blocks_free) * u64::from(s.block_bytes);
        Some(format!(
            "arbor: {:.1} MB in live blocks of {} bytes ({} total, {} free), {} flushes, {} blocks written",
            live as f64 / 1e6,
            s.block_bytes,
            s.blocks_total,
            s.blocks_free,
            s.flushes,
            s.blocks_written
        ))
    }
}
