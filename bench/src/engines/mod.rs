//! One `Engine` implementation per store, each on a fresh store at paths the caller chose.

use std::path::{Path, PathBuf};

use crate::config::Durability;
use crate::data::{Key, Value};
use crate::BenchResult;

pub mod arbor;
#[cfg(feature = "compare")]
pub mod lmdb;
#[cfg(feature = "compare")]
pub mod redb;

/// What the workloads need from a store. Every write transaction commits with the run's
/// `--durability` (durable when it returns, by default; mapping in `config::Durability`).
/// Methods take `&self`: the concurrent rows call them from several threads at once (each
/// engine serializes its writers itself, as its users would see).
pub trait Engine: Send + Sync {
    /// One durable write transaction that inserts every pair.
    fn insert_txn(&self, keys: &[Key], values: &[Value]) -> BenchResult<()>;

    /// One durable write transaction that removes every key; returns how many existed.
    fn remove_txn(&self, keys: &[Key]) -> BenchResult<u64>;

    /// Point reads in one read transaction; returns the total value bytes found.
    fn get_many(&self, keys: &[Key]) -> BenchResult<u64>;

    /// Range scans of up to `len` entries from each start key, in one read transaction;
    /// returns the number of entries visited.
    fn scan_many(&self, starts: &[Key], len: usize) -> BenchResult<u64>;

    /// `Err(reason)` when reads cannot run on several threads at once (the multi-threaded
    /// read row then shows the reason instead of a number).
    fn concurrent_reads(&self) -> Result<(), String> {
        Ok(())
    }

    /// Point reads in one read transaction through the engine's batched read API, `batch`
    /// keys per call; returns the total value bytes found. `Err(reason)` from
    /// `batched_reads` when the engine has no such API.
    fn get_batched(&self, keys: &[Key], batch: usize) -> BenchResult<u64> {
        let _ = (keys, batch);
        Err("no batched read API".into())
    }

    /// `Err(reason)` when the engine has no batched read API (the batched cold-read row then
    /// shows the reason).
    fn batched_reads(&self) -> Result<(), String> {
        Err("n/a (no batched read API)".into())
    }

    /// Closes the store and opens it again, calling `while_closed` in between (the cold-read
    /// rows drop the page cache there): afterwards the engine holds none of the store in its
    /// own memory. A failure of `while_closed` is returned after the store is open again.
    fn reopen(&mut self, while_closed: &mut dyn FnMut() -> BenchResult<()>) -> BenchResult<()>;

    /// Whether its reads go through the kernel's page cache (buffered or mmap I/O), so a
    /// store is cold only once that cache is dropped; `false` for O_DIRECT (Arbor).
    fn page_cache(&self) -> bool {
        true
    }

    /// Opens a read transaction (snapshot) to hold while writers go on; `Err(reason)` when
    /// the engine has none.
    fn hold_reader(&self) -> Result<Box<dyn HeldReader + '_>, String>;

    /// Device flushes so far, when the engine counts them.
    fn flushes(&self) -> Option<u64> {
        None
    }

    /// The engine's own count of what it has written to its store since open, or why it
    /// keeps none (the write-count rows then show that reason).
    fn writes(&self) -> Result<Writes, String>;

    /// Makes every commit so far durable and writes whatever the engine deferred (Arbor: a
    /// checkpoint), so the write-count rows include those writes. Untimed.
    fn settle(&self) -> BenchResult<()>;

    /// Bytes of its space the store has in use, as the engine accounts it (Arbor: blocks in
    /// use times the block size), when it can say. The size rows use it where the store has
    /// no file size: on a raw block device.
    fn used_bytes(&self) -> Option<u64> {
        None
    }

    /// A one-line note about the engine's state (e.g. live bytes), for the footnotes.
    fn note(&self) -> Option<String> {
        None
    }
}

/// What an engine counts of its own writes (`Engine::writes`): totals since open, or the
/// difference of two (`since`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Writes {
    /// Blocks written (Arbor: journal blocks, both copies; tree and allocator blocks; both
    /// superblock copies of each checkpoint).
    pub blocks: u64,
    /// The bytes of those blocks.
    pub bytes: u64,
    /// Journal batches (one write and one flush each), journal records and checkpoints; 0
    /// for an engine without them.
    pub journal_batches: u64,
    pub journal_records: u64,
    pub checkpoints: u64,
}

impl Writes {
    /// What was written after `earlier` (an earlier count of the same engine).
    pub fn since(self, earlier: Writes) -> Writes {
        Writes {
            blocks: self.blocks - earlier.blocks,
            bytes: self.bytes - earlier.bytes,
            journal_batches: self.journal_batches - earlier.journal_batches,
            journal_records: self.journal_records - earlier.journal_records,
            checkpoints: self.checkpoints - earlier.checkpoints,
        }
    }
}

/// A read transaction held open across later commits.
pub trait HeldReader {
    /// Reads `key` as of when the reader was opened.
    fn get(&self, key: &Key) -> BenchResult<Option<Vec<u8>>>;
}

/// Where an engine's store lives: the path it is created at (Arbor: a file or a block device;
/// redb: a file; LMDB: a directory).
#[derive(Clone, Debug)]
pub struct Store {
    pub path: PathBuf,
    /// Arbor may erase a block device or an existing file (`--i-know-this-erases`).
    pub erase: bool,
}

/// The engines this build knows, in table order.
pub fn known() -> Vec<&'static str> {
    let mut v = vec!["arbor"];
    if cfg!(feature = "compare") {
        v.extend(["redb", "lmdb"]);
    }
    v
}

/// Creates engine `name` on a fresh store.
pub fn open(name: &str, store: &Store, durability: Durability) -> BenchResult<Box<dyn Engine>> {
    match name {
        "arbor" => Ok(Box::new(arbor::ArborEngine::create(store, durability)?)),
        #[cfg(feature = "compare")]
        "redb" => Ok(Box::new(redb::RedbEngine::create(&store.path, durability)?)),
        #[cfg(feature = "compare")]
        "lmdb" => Ok(Box::new(lmdb::LmdbEngine::create(&store.path, durability)?)),
        other => {
            Err(format!("unknown engine {other:?} (this build knows: {})", known().join(", ")))
        }
    }
}

/// Apparent bytes and allocated bytes of a store: a file, or every file in a directory.
/// `None` for a block device, which has no file size.
pub fn store_bytes(path: &Path) -> BenchResult<Option<(u64, u64)>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(path).map_err(|e| format!("stat {}: {e}", path.display()))?;
    if meta.file_type().is_block_device() {
        return Ok(None);
    }
    if meta.is_file() {
        return Ok(Some((meta.len(), meta.blocks() * 512)));
    }
    let mut apparent = 0;
    let mut allocated = 0;
    let entries =
        std::fs::read_dir(path).map_err(|e| format!("read_dir {}: {e}", path.display()))?;
    for entry in entries {
        let meta = entry.and_then(|e| e.metadata()).map_err(|e| format!("metadata: {e}"))?;
        if meta.is_file() {
            apparent += meta.len();
            allocated += meta.blocks() * 512;
        }
    }
    Ok(Some((apparent, allocated)))
}
