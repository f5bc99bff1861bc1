//! LMDB through heed, with default flags: every commit syncs (`fdatasync`) before returning;
//! `--durability eventual` adds `MDB_NOMETASYNC`, `none` `MDB_NOSYNC` (see
//! `config::Durability`).

use std::ops::Bound;
use std::path::Path;

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions};

use super::{Engine, HeldReader, Writes};
use crate::config::Durability;
use crate::data::{Key, Value};
use crate::{ctx, BenchResult};

/// Map size: far more than any run writes.
const MAP_BYTES: usize = 16 << 30;

pub struct LmdbEngine {
    env: &'static Env,
    db: Database<'static, Bytes, Bytes>,
}

impl LmdbEngine {
    /// Creates the environment in directory `dir` (made if missing).
    pub fn create(dir: &Path, durability: Durability) -> BenchResult<LmdbEngine> {
        std::fs::create_dir_all(dir).map_err(ctx("create_dir"))?;
        let mut opts = EnvOpenOptions::new();
        opts.map_size(MAP_BYTES).max_dbs(1);
        let flags = match durability {
            Durability::Immediate => EnvFlags::empty(),
            Durability::Eventual => EnvFlags::NO_META_SYNC,
            Durability::None => EnvFlags::NO_SYNC,
        };
        // SAFETY: heed marks these flags unsafe because they give up durability of recent
        // commits after a system crash; that loss is what `--durability` asks to measure, and
        // the store is a throwaway benchmark directory.
        unsafe { opts.flags(flags) };
        // SAFETY: `dir` is a fresh directory of this process; no other handle maps it, and
        // the environment is opened exactly once.
        let env = unsafe { opts.open(dir) }.map_err(ctx("EnvOpenOptions::open"))?;
        // heed ties a `Database` to a borrow of its `Env`. The benchmark keeps one environment
        // per engine for the whole process, so it leaks that handle (the map stays until exit).
        let env: &'static Env = Box::leak(Box::new(env));
        let wtxn = env.write_txn().map_err(ctx("write_txn"))?;
        let db = match env
            .create_databases_and_commit(wtxn, |wdo, wtxn| {
                wdo.create_database(wtxn, None).map(CommitOrAbort::<_, ()>::Commit)
            })
            .map_err(ctx("create_database"))?
        {
            CommitOrAbort::Commit(db) => db,
            CommitOrAbort::Abort(()) => return Err("create_database aborted".into()),
        };
        Ok(LmdbEngine { env, db })
    }
}

impl Engine for LmdbEngine {
    fn insert_txn(&self, keys: &[Key], values: &[Value]) -> BenchResult<()> {
        let mut tx = self.env.write_txn().map_err(ctx("write_txn"))?;
        for (k, v) in keys.iter().zip(values) {
            self.db.put(&mut tx, k, v).map_err(ctx("put"))?;
        }
        tx.commit().map_err(ctx("commit"))
    }

    fn remove_txn(&self, keys: &[Key]) -> BenchResult<u64> {
        let mut tx = self.env.write_txn().map_err(ctx("write_txn"))?;
        let mut removed = 0;
        for k in keys {
            removed += u64::from(self.db.delete(&mut tx, k).map_err(ctx("delete"))?);
        }
        tx.commit().map_err(ctx("commit"))?;
        Ok(removed)
    }

    fn get_many(&self, keys: &[Key]) -> BenchResult<u64> {
        let tx = self.env.read_txn().map_err(ctx("read_txn"))?;
        let mut bytes = 0;
        for k in keys {
            if let Some(v) = self.db.get(&tx, k).map_err(ctx("get"))? {
                bytes += v.len() as u64;
            }
        }
        Ok(bytes)
    }

    fn scan_many(&self, starts: &[Key], len: usize) -> BenchResult<u64> {
        let tx = self.env.read_txn().map_err(ctx("read_txn"))?;
        let mut seen = 0;
        for k in starts {
            let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Included(k), Bound::Unbounded);
            for r in self.db.range(&tx, &bounds).map_err(ctx("range"))?.take(len) {
                let (_k, v) = r.map_err(ctx("range next"))?;
                seen += u64::from(!v.is_empty());
            }
        }
        Ok(seen)
    }

    /// `mdb_env_stat` and `mdb_env_info` count pages in use and the last page number, never
    /// pages written.
    fn writes(&self) -> Result<Writes, String> {
        Err("n/a (LMDB counts no writes)".into())
    }

    /// `mdb_env_sync(force)`: nothing to write after default (synced) commits; the data and
    /// meta pages after `MDB_NOSYNC` or `MDB_NOMETASYNC` ones.
    fn settle(&self) -> BenchResult<()> {
        self.env.force_sync().map_err(ctx("force_sync"))
    }

    fn hold_reader(&self) -> Result<Box<dyn HeldReader + '_>, String> {
        let tx = self.env.read_txn().map_err(ctx("read_txn"))?;
        Ok(Box::new(LmdbReader { tx, db: self.db }))
    }
}

/// A read transaction, held open: LMDB cannot reuse pages freed after it began.
struct LmdbReader {
    tx: heed::RoTxn<'static, heed::WithTls>,
    db: Database<'static, Bytes, Bytes>,
}

impl HeldReader for LmdbReader {
    fn get(&self, key: &Key) -> BenchResult<Option<Vec<u8>>> {
        Ok(self.db.get(&self.tx, key).map_err(ctx("get"))?.map(<[u8]>::to_vec))
    }
}
