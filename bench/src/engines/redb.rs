//! redb, with `Durability::Immediate` commits (or `None`, see `config::Durability`) and read
//! transactions for reads. `reopen` drops the `Database` and opens the file again
//! (`Database::create` opens an existing store): redb's own cache starts empty; the kernel's
//! page cache is the caller's to drop.

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use super::{Engine, HeldReader, Writes};
use crate::config;
use crate::data::{Key, Value};
use crate::{ctx, BenchResult};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bench");

pub struct RedbEngine {
    /// `None` only while `reopen` has it closed (or after a reopen that failed).
    db: Option<Database>,
    durability: Durability,
    path: PathBuf,
}

impl RedbEngine {
    pub fn create(path: &Path, durability: config::Durability) -> BenchResult<RedbEngine> {
        let db = Database::create(path).map_err(ctx("Database::create"))?;
        // redb 4 has no eventual level: `None` (durable with the next Immediate commit) is the
        // nearest.
        let durability = match durability {
            config::Durability::Immediate => Durability::Immediate,
            config::Durability::Eventual | config::Durability::None => Durability::None,
        };
        Ok(RedbEngine { db: Some(db), durability, path: path.to_path_buf() })
    }

    fn db(&self) -> BenchResult<&Database> {
        self.db.as_ref().ok_or_else(|| "store closed (reopen failed)".to_string())
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&mut redb::Table<'_, &[u8], &[u8]>) -> BenchResult<T>,
    ) -> BenchResult<T> {
        let mut tx = self.db()?.begin_write().map_err(ctx("begin_write"))?;
        tx.set_durability(self.durability).map_err(ctx("set_durability"))?;
        let out = {
            let mut t = tx.open_table(TABLE).map_err(ctx("open_table"))?;
            f(&mut t)?
        };
        tx.commit().map_err(ctx("commit"))?;
        Ok(out)
    }
}

impl Engine for RedbEngine {
    fn insert_txn(&self, keys: &[Key], values: &[Value]) -> BenchResult<()> {
        self.write(|t| {
            for (k, v) in keys.iter().zip(values) {
                t.insert(k.as_slice(), v.as_slice()).map_err(ctx("insert"))?;
            }
            Ok(())
        })
    }

    fn remove_txn(&self, keys: &[Key]) -> BenchResult<u64> {
        self.write(|t| {
            let mut removed = 0;
            for k in keys {
                removed += u64::from(t.remove(k.as_slice()).map_err(ctx("remove"))?.is_some());
            }
            Ok(removed)
        })
    }

    fn get_many(&self, keys: &[Key]) -> BenchResult<u64> {
        let tx = self.db()?.begin_read().map_err(ctx("begin_read"))?;
        let t = tx.open_table(TABLE).map_err(ctx("open_table"))?;
        let mut bytes = 0;
        for k in keys {
            if let Some(v) = t.get(k.as_slice()).map_err(ctx("get"))? {
                bytes += v.value().len() as u64;
            }
        }
        Ok(bytes)
    }

    fn scan_many(&self, starts: &[Key], len: usize) -> BenchResult<u64> {
        let tx = self.db()?.begin_read().map_err(ctx("begin_read"))?;
        let t = tx.open_table(TABLE).map_err(ctx("open_table"))?;
        let mut seen = 0;
        for k in starts {
            for r in t.range::<&[u8]>(k.as_slice()..).map_err(ctx("range"))?.take(len) {
                let (_k, v) = r.map_err(ctx("range next"))?;
                seen += u64::from(!v.value().is_empty());
            }
        }
        Ok(seen)
    }

    /// redb's statistics (`Database::cache_stats`, a transaction's `stats`) count cache
    /// hits, evictions and pages in use, never pages written.
    fn writes(&self) -> Result<Writes, String> {
        Err("n/a (redb counts no writes)".into())
    }

    /// Immediate commits leave nothing behind; after `None` ones, an empty Immediate commit
    /// makes them durable.
    fn settle(&self) -> BenchResult<()> {
        if matches!(self.durability, Durability::Immediate) {
            return Ok(());
        }
        let mut tx = self.db()?.begin_write().map_err(ctx("begin_write"))?;
        tx.set_durability(Durability::Immediate).map_err(ctx("set_durability"))?;
        tx.commit().map_err(ctx("commit"))
    }

    fn reopen(&mut self, while_closed: &mut dyn FnMut() -> BenchResult<()>) -> BenchResult<()> {
        drop(self.db.take());
        let between = while_closed();
        self.db = Some(Database::create(&self.path).map_err(ctx("Database::create (reopen)"))?);
        between
    }

    fn hold_reader(&self) -> Result<Box<dyn HeldReader + '_>, String> {
        let tx = self.db()?.begin_read().map_err(ctx("begin_read"))?;
        let table = tx.open_table(TABLE).map_err(ctx("open_table"))?;
        Ok(Box::new(RedbReader { _tx: tx, table }))
    }
}

/// A read transaction and its table, held open.
struct RedbReader {
    _tx: redb::ReadTransaction,
    table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl HeldReader for RedbReader {
    fn get(&self, key: &Key) -> BenchResult<Option<Vec<u8>>> {
        let v = self.table.get(key.as_slice()).map_err(ctx("get"))?;
        Ok(v.map(|v| v.value().to_vec()))
    }
}
