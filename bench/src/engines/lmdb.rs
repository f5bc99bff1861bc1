//! LMDB through heed, with default flags: every commit syncs (`fdatasync`) before returning;
//! `--durability eventual` adds `MDB_NOMETASYNC`, `none` `MDB_NOSYNC` (see
//! `config::Durability`).
//!
//! `reopen` closes the environment (`Env::prepare_for_closing`, then waits until LMDB has
//! closed it and unmapped the file) and opens it again with the same flags; the kernel's
//! page cache, which holds LMDB's mapped pages, is the caller's to drop.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions};

use super::{Engine, HeldReader, Writes};
use crate::config::Durability;
use crate::data::{Key, Value};
use crate::{ctx, BenchResult};

/// Map size: far more than any run writes.
const MAP_BYTES: usize = 16 << 30;

pub struct LmdbEngine {
    /// `None` only while `reopen` has it closed (or after a reopen that failed).
    env: Option<Env>,
    db: Database<'static, Bytes, Bytes>,
    dir: PathBuf,
    durability: Durability,
}

impl LmdbEngine {
    /// Creates the environment in directory `dir` (made if missing).
    pub fn create(dir: &Path, durability: Durability) -> BenchResult<LmdbEngine> {
        std::fs::create_dir_all(dir).map_err(ctx("create_dir"))?;
        let env = open_env(dir, durability)?;
        let wtxn = env.write_txn().map_err(ctx("write_txn"))?;
        // A committed `Database` is `'static`: it names the table, it borrows nothing (but
        // it belongs to this `Env`: `reopen` opens it again in the new one).
        let db = match env
            .create_databases_and_commit(wtxn, |wdo, wtxn| {
                wdo.create_database(wtxn, None).map(CommitOrAbort::<_, ()>::Commit)
            })
            .map_err(ctx("create_database"))?
        {
            CommitOrAbort::Commit(db) => db,
            CommitOrAbort::Abort(()) => return Err("create_database aborted".into()),
        };
        Ok(LmdbEngine { env: Some(env), db, dir: dir.to_path_buf(), durability })
    }

    /// Opens the environment in the store's directory again, and its unnamed database, in a
    /// read transaction (nothing written).
    fn open_again(&mut self) -> BenchResult<()> {
        let env = open_env(&self.dir, self.durability)?;
        let rtxn = env.read_txn().map_err(ctx("read_txn"))?;
        let opened = env
            .open_databases_and_commit(rtxn, |dbo, rtxn| {
                dbo.open_database(rtxn, None).map(CommitOrAbort::<_, ()>::Commit)
            })
            .map_err(ctx("open_database"))?;
        self.db = match opened {
            CommitOrAbort::Commit(Some(db)) => db,
            CommitOrAbort::Commit(None) => return Err("unnamed database missing".into()),
            CommitOrAbort::Abort(()) => return Err("open_database aborted".into()),
        };
        self.env = Some(env);
        Ok(())
    }

    fn env(&self) -> BenchResult<&Env> {
        self.env.as_ref().ok_or_else(|| "store closed (reopen failed)".to_string())
    }
}

/// Opens the environment in `dir` with the flags `durability` asks for.
fn open_env(dir: &Path, durability: Durability) -> BenchResult<Env> {
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
    // SAFETY: `dir` is a directory of this process; no other handle maps it: the
    // environment is open once at a time (`reopen` waits for the close).
    unsafe { opts.open(dir) }.map_err(ctx("EnvOpenOptions::open"))
}

impl Engine for LmdbEngine {
    fn insert_txn(&self, keys: &[Key], values: &[Value]) -> BenchResult<()> {
        let mut tx = self.env()?.write_txn().map_err(ctx("write_txn"))?;
        for (k, v) in keys.iter().zip(values) {
            self.db.put(&mut tx, k, v).map_err(ctx("put"))?;
        }
        tx.commit().map_err(ctx("commit"))
    }

    fn remove_txn(&self, keys: &[Key]) -> BenchResult<u64> {
        let mut tx = self.env()?.write_txn().map_err(ctx("write_txn"))?;
        let mut removed = 0;
        for k in keys {
            removed += u64::from(self.db.delete(&mut tx, k).map_err(ctx("delete"))?);
        }
        tx.commit().map_err(ctx("commit"))?;
        Ok(removed)
    }

    fn get_many(&self, keys: &[Key]) -> BenchResult<u64> {
        let tx = self.env()?.read_txn().map_err(ctx("read_txn"))?;
        let mut bytes = 0;
        for k in keys {
            if let Some(v) = self.db.get(&tx, k).map_err(ctx("get"))? {
                bytes += v.len() as u64;
            }
        }
        Ok(bytes)
    }

    fn scan_many(&self, starts: &[Key], len: usize) -> BenchResult<u64> {
        let tx = self.env()?.read_txn().map_err(ctx("read_txn"))?;
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
        self.env()?.force_sync().map_err(ctx("force_sync"))
    }

    fn reopen(&mut self, while_closed: &mut dyn FnMut() -> BenchResult<()>) -> BenchResult<()> {
        if let Some(env) = self.env.take() {
            // The last handle: dropping it closes the environment; `wait` returns once closed.
            env.prepare_for_closing().wait();
        }
        let between = while_closed();
        self.open_again()?;
        between
    }

    fn hold_reader(&self) -> Result<Box<dyn HeldReader + '_>, String> {
        let tx = self.env()?.read_txn().map_err(ctx("read_txn"))?;
        Ok(Box::new(LmdbReader { tx, db: self.db }))
    }
}

/// A read transaction, held open: LMDB cannot reuse pages freed after it began.
struct LmdbReader<'e> {
    tx: heed::RoTxn<'e, heed::WithTls>,
    db: Database<'static, Bytes, Bytes>,
}

impl HeldReader for LmdbReader<'_> {
    fn get(&self, key: &Key) -> BenchResult<Option<Vec<u8>>> {
        Ok(self.db.get(&self.tx, key).map_err(ctx("get"))?.map(<[u8]>::to_vec))
    }
}
