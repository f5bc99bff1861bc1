//! One `Engine` implementation per store, each on its own fresh directory.

use std::path::Path;

use crate::data::{Key, Value};
use crate::BenchResult;

pub mod arbor;
#[cfg(feature = "compare")]
pub mod lmdb;
#[cfg(feature = "compare")]
pub mod redb;

/// What the workloads need from a store. Every write transaction is durable when it returns.
pub trait Engine {
    fn name(&self) -> &'static str;

    /// One durable write transaction that inserts every pair.
    fn insert_txn(&mut self, keys: &[Key], values: &[Value]) -> BenchResult<()>;

    /// One durable write transaction that removes every key; returns how many existed.
    fn remove_txn(&mut self, keys: &[Key]) -> BenchResult<u64>;

    /// Point reads in one read transaction; returns the total value bytes found.
    fn get_many(&mut self, keys: &[Key]) -> BenchResult<u64>;

    /// Range scans of up to `len` entries from each start key, in one read transaction;
    /// returns the number of entries visited.
    fn scan_many(&mut self, starts: &[Key], len: usize) -> BenchResult<u64>;

    /// Device flushes so far, when the engine counts them.
    fn flushes(&self) -> Option<u64> {
        None
    }

    /// A one-line note about the engine's state (e.g. live bytes), for the footnotes.
    fn note(&self) -> Option<String> {
        None
    }
}

/// The engines this build knows, in table order.
pub fn known() -> Vec<&'static str> {
    let mut v = vec!["arbor"];
    if cfg!(feature = "compare") {
        v.extend(["redb", "lmdb"]);
    }
    v
}

/// Creates engine `name` on a fresh store inside the empty directory `dir`.
pub fn open(name: &str, dir: &Path) -> BenchResult<Box<dyn Engine>> {
    match name {
        "arbor" => Ok(Box::new(arbor::ArborEngine::create(dir)?)),
        #[cfg(feature = "compare")]
        "redb" => Ok(Box::new(redb::RedbEngine::create(dir)?)),
        #[cfg(feature = "compare")]
        "lmdb" => Ok(Box::new(lmdb::LmdbEngine::create(dir)?)),
        other => {
            Err(format!("unknown engine {other:?} (this build knows: {})", known().join(", ")))
        }
    }
}
