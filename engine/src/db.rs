//! `Db`: creating and opening a store, and the state its handles share.

use std::path::Path;

use arbor_format::constants::JOURNAL_LSN_FIRST;
use arbor_format::constants::{
    bitmap_bits_per_chunk, check_block_bytes, SUPERBLOCK_BYTES, SUPERBLOCK_SLOT_COUNT,
    SUPERBLOCK_SLOT_STRIDE_BYTES, TREE_ID_CATALOG, TREE_ID_FIRST_USER,
};
use arbor_format::journal::RecordLimits;
use arbor_format::superblock;
use arbor_format::{BlockKind, ChildPtr, JournalRegion};

use crate::alloc::Allocator;
use crate::durable::freeze::{self, SuperblockInputs};
use crate::durable::journal::{Journal, JournalStart};
use crate::durable::pipeline::{DurableState, Failure, Pipeline};
use crate::durable::{journal_scan, recovery};
use crate::io::{self, AlignedBuf, BlockDevice, DeviceOptions, WriteOp};
use crate::mvcc::{Registry, RootRecord};
use crate::options::Options;
use crate::store::Store;
use crate::sync::{lock, Arc, AtomicBool, AtomicU64, Condvar, Mutex, Ordering};
use crate::txn::backup::{self, BackupInfo};
use crate::txn::checkpointer::Checkpointer;
use crate::txn::replay;
use crate::txn::snapshot::Snapshot;
use crate::txn::write::WriteTxn;
use crate::txn::Shared;
use crate::writer::{TxnRecord, TxnScratch, Writer};
use crate::{Error, Result};

/// An open store: a cheap handle (`Clone`, `Send + Sync`). Clones share the store; the
/// last one dropped closes it — a clean close (see `Drop`) that releases the store's lock,
/// even while snapshots from it live (their reads then return `Error::Closed`).
#[derive(Clone)]
pub struct Db {
    pub(crate) shared: Arc<Handle>,
}

/// What the `Db` clones share: dropping the last one closes the store. Snapshots hold the
/// state weakly, so the store's device (and its lock) goes when this does, or when a read
/// in progress at that moment ends.
pub(crate) struct Handle {
    shared: Arc<Shared>,
}

impl std::ops::Deref for Handle {
    type Target = Arc<Shared>;
    fn deref(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for Handle {
    /// A clean close makes committed transactions durable. Errors cannot be reported from
    /// `drop`: call `Db::flush` first to see them; the next `open` recovers either way.
    fn drop(&mut self) {
        self.shared.checkpointer.stop();
        let _ = flush(&self.shared);
        self.shared.closed.store(true, Ordering::Release);
        // Snapshots and guards may keep the memory; the device is done with.
        self.shared.store.dev.unlock();
    }
}

fn flush(shared: &Shared) -> Result<()> {
    let target = shared.lock_writer()?.last_commit_gen;
    shared.make_durable(None, target, true)
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("device", &self.shared.store.dev.describe())
            .field("block_bytes", &self.shared.store.block_bytes)
            .finish_non_exhaustive()
    }
}

/// Counters and sizes, from `Db::stats`.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Stats {
    /// The store's block size.
    pub block_bytes: u32,
    /// The generation the writer is filling (design.md §4).
    pub generation_open: u64,
    /// The newest generation known durable (its flush completed).
    pub generation_durable: u64,
    /// Blocks the store manages (its device's length over the block size).
    pub blocks_total: u64,
    /// Blocks free for allocation.
    pub blocks_free: u64,
    /// Blocks never allocated to trees: the superblock area and the journal region.
    pub blocks_reserved: u64,
    /// The longest run of contiguous free blocks.
    pub largest_free_run: u64,
    /// Named trees.
    pub trees: usize,
    /// Bytes of clean blocks resident in the buffer pool.
    pub cache_bytes: u64,
    /// Clean blocks resident in the buffer pool.
    pub cache_blocks: usize,
    /// Bytes of the open generation's changed blocks held in memory.
    pub dirty_bytes: u64,
    /// Blocks read from the device since open.
    pub block_reads: u64,
    /// Block lookups the buffer pool answered since open.
    pub cache_hits: u64,
    /// Blocks written to the device since open.
    pub blocks_written: u64,
    /// Of `blocks_written`, dirty blocks written back early (memory pressure, design.md §4).
    pub blocks_written_early: u64,
    /// Device flushes since open (one per durable generation).
    pub flushes: u64,
    /// Mod-log entry bytes not yet pruned.
    pub modlog_bytes: u64,
    /// Block images kept only for snapshot readers (counted with `modlog_bytes` against
    /// `Options::modlog_max_bytes`).
    pub retained_bytes: u64,
    /// Freed blocks outstanding snapshots keep from reuse.
    pub pinned_blocks: u64,
    /// Snapshots registered and not yet released.
    pub snapshots_live: usize,
    /// Seq of the oldest of them.
    pub snapshot_oldest_seq: Option<u64>,
    /// Snapshots expired by the bound since open.
    pub snapshot_expirations: u64,
    /// Seq of the last commit (what a snapshot taken now sees).
    pub visible_seq: u64,
    /// Subtrees of deleted trees whose blocks later commits still have to free.
    pub orphan_subtrees: usize,
    /// Superblock copies that carried the magic but failed verification at open.
    pub rejected_superblock_copies: u32,
    /// Checkpoints completed since open (design.md §11.6).
    pub checkpoints: u64,
    /// Journal ring bytes between the newest checkpoint's replay start and the next append
    /// (both copies of each block counted).
    pub journal_bytes_in_use: u64,
    /// Journal batches written since open (one write and one flush each).
    pub journal_batches: u64,
    /// Journal blocks written since open, both copies counted.
    pub journal_blocks_written: u64,
    /// Commit records appended to the journal since open.
    pub journal_records: u64,
    /// Journal records applied at open (commits after the newest checkpoint).
    pub records_replayed: u64,
    /// The device, as it describes itself ("io_uring file /x (qd 64, sector 4096)").
    pub device: String,
}

fn device_options(opts: &Options) -> DeviceOptions {
    DeviceOptions {
        backend: opts.io_backend,
        queue_depth: opts.queue_depth,
        grow_step_bytes: opts.file_grow_step_bytes,
        max_bytes: opts.file_max_bytes,
        initial_bytes: opts.file_initial_bytes,
        overwrite_existing: opts.overwrite_existing,
    }
}

/// A store's uuid: 16 bytes from `/dev/urandom` (the clock and pid if it cannot be read).
fn random_uuid() -> [u8; 16] {
    let mut out = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        if f.read_exact(&mut out).is_ok() {
            return out;
        }
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    out.copy_from_slice(&(t ^ u128::from(std::process::id()) << 64).to_le_bytes());
    out
}

/// The largest record a commit journals: `Options::journal_record_max`, or 1/8 of the ring
/// (design.md §11.5); never more than the ring's hard limit.
fn record_max(opts: &Options, region: &JournalRegion) -> u64 {
    match opts.journal_record_max {
        0 => region.record_bytes_max_default(),
        max => max.min(region.record_bytes_max()),
    }
}

/// Blocks kept back so a full store can still commit (allocator metadata) and delete.
fn reserve_blocks(block_bytes: u32, block_count: u64) -> u64 {
    let chunks = block_count.div_ceil(bitmap_bits_per_chunk(block_bytes));
    64 + 4 * chunks
}

impl Db {
    /// Formats `path` (a file, created if missing, or a block device) as a new store.
    /// Refuses a target that holds data unless `opts.overwrite_existing` (see there).
    /// A new file is as small as the store allows and grows as it fills.
    ///
    /// Errors: [`Error::Locked`] when another handle has it open, [`Error::ExistingData`],
    /// [`Error::Io`] naming the operation and path.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("arbor-create-{}", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let db = arbor::Db::create(&path, arbor::Options::default())?;
    /// assert!(matches!(
    ///     arbor::Db::open(&path, arbor::Options::default()),
    ///     Err(arbor::Error::Locked { .. })
    /// ));
    /// # drop(db);
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn create(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
        check_block_bytes(opts.block_bytes).map_err(|e| Error::InvalidInput(e.to_string()))?;
        // `open_path` refuses existing data itself, before it grows the file.
        let dev = io::open_path(path.as_ref(), true, &device_options(&opts))?;
        Db::format(dev, opts)
    }

    /// Opens the store at `path`, recovering to the newest durable state.
    ///
    /// Errors: [`Error::NotAnArborStore`], [`Error::Locked`], [`Error::UnsupportedVersion`],
    /// [`Error::Corrupt`] when no superblock copy verifies, [`Error::Io`].
    pub fn open(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
        let dev = io::open_path(path.as_ref(), false, &device_options(&opts))?;
        Db::open_on(dev, opts)
    }

    /// A new, empty store in memory, for tests and scratch data: the same engine on a
    /// [`MemDevice`](crate::io::MemDevice) that grows on demand up to `max_bytes` (past it,
    /// commits get [`Error::NoSpace`]). Nothing survives the `Db`. For other options, use
    /// `Db::create_on(Box::new(MemDevice::new(max_bytes)), opts)`.
    ///
    /// ```
    /// let db = arbor::Db::memory(64 << 20)?;
    /// let mut tx = db.begin_write()?;
    /// tx.tree("t")?.insert(b"k", b"v")?;
    /// tx.commit()?;
    /// assert_eq!(db.snapshot()?.tree("t")?.unwrap().get(b"k")?.unwrap(), b"v");
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn memory(max_bytes: u64) -> Result<Db> {
        Db::create_on(Box::new(io::MemDevice::new(max_bytes)), Options::default())
    }

    /// Formats any block device as a new store. Refuses a device that holds data unless
    /// `opts.overwrite_existing` (see there).
    pub fn create_on(dev: Box<dyn BlockDevice>, opts: Options) -> Result<Db> {
        if !opts.overwrite_existing {
            if let Some(what) = io::probe_existing_data(dev.as_ref())? {
                return Err(Error::ExistingData { what });
            }
        }
        Db::format(dev, opts)
    }

    /// Writes a new, empty store on `dev`, whose contents `create` has already vetted.
    fn format(dev: Box<dyn BlockDevice>, opts: Options) -> Result<Db> {
        let block_bytes = opts.block_bytes;
        check_block_bytes(block_bytes).map_err(|e| Error::InvalidInput(e.to_string()))?;
        if dev.sector_bytes() > block_bytes {
            return Err(Error::InvalidInput(format!(
                "device sector of {} bytes is larger than the block size {block_bytes}",
                dev.sector_bytes()
            )));
        }
        // A file sized by the caller holds its journal; one left to grow sizes it by its cap.
        let room = match opts.file_initial_bytes {
            0 => dev.max_len_bytes(),
            initial => initial.max(dev.len_bytes()).min(dev.max_len_bytes()),
        };
        let region = JournalRegion::plan(block_bytes, room, opts.journal_bytes)
            .map_err(|e| Error::InvalidInput(format!("no room for the journal: {e}")))?;
        let min_bytes = (region.end_block() + 64) * u64::from(block_bytes);
        if dev.len_bytes() < min_bytes {
            dev.grow(min_bytes.max(opts.file_initial_bytes))?;
        }
        if dev.len_bytes() < min_bytes {
            return Err(Error::NoSpace);
        }
        let block_count = dev.len_bytes() / u64::from(block_bytes);
        let store = Store::new(dev, block_bytes, opts.cache_bytes);
        store.set_first_data(region.end_block());
        // Wipe every superblock slot first: a forced create over an old store must not
        // leave a newer-looking generation behind.
        let zeros = AlignedBuf::zeroed(SUPERBLOCK_BYTES.max(store.align), store.align);
        let wipe: Vec<WriteOp<'_>> = (0..SUPERBLOCK_SLOT_COUNT)
            .map(|slot| WriteOp {
                offset: u64::from(slot) * SUPERBLOCK_SLOT_STRIDE_BYTES,
                data: &zeros[..SUPERBLOCK_BYTES.max(store.dev.sector_bytes() as usize)],
            })
            .collect();
        store.dev.write_batch(&wipe)?;

        let uuid = random_uuid();
        let mut alloc = Allocator::new(block_bytes, block_count);
        alloc.reserve_prefix(region.end_block());
        let mut w = Writer::new(1, alloc, ChildPtr::NULL);
        w.reserve_blocks = reserve_blocks(block_bytes, block_count);
        let catalog = w.edit().new_node(&store, BlockKind::Leaf, 0, TREE_ID_CATALOG)?;
        w.trees.catalog = w.dirty.ptr(catalog);
        w.txn = TxnScratch::default();
        let inputs = SuperblockInputs {
            uuid,
            flushed_gen: 0,
            durable_alternation: 1,
            prev_crc: 0,
            journal: region,
            replay_lsn: JOURNAL_LSN_FIRST,
            checkpoint_seq: None,
        };
        let frozen = freeze::freeze(&mut w, &store, &inputs)?;
        freeze::write_out(&store, &frozen)?;
        let state = DurableState::at(frozen.gen, frozen.alternation, frozen.superblock_crc);
        let start = JournalStart {
            next_lsn: JOURNAL_LSN_FIRST,
            prev_crc: 0,
            checkpoint_seq: 0,
            replay_lsn: JOURNAL_LSN_FIRST,
        };
        let journal = Journal::new(region, uuid, record_max(&opts, &region), start)
            .with_batches_in_flight(opts.journal_batches_in_flight.max(1));
        let db = Db::from_parts(store, w, state, opts, journal, 0);
        db.start_background();
        Ok(db)
    }

    /// Opens a store on any block device: the newest checkpoint, then a replay of the
    /// journal's records after it (design.md §11.7), then a checkpoint of what replay applied.
    pub fn open_on(dev: Box<dyn BlockDevice>, opts: Options) -> Result<Db> {
        let found = crate::durable::superblock::read_superblocks(dev.as_ref())?;
        let block_bytes = found.copies[0].1.block_bytes();
        check_block_bytes(block_bytes).map_err(|e| Error::corrupt(0, e.to_string()))?;
        let store = Store::new(dev, block_bytes, opts.cache_bytes);
        let opened = recovery::recover(&store, found)?;
        let (sb, region) = (opened.sb, opened.journal);
        let scanned = journal_scan::scan(&store, region, sb.uuid(), sb.replay_lsn())?;
        if scanned.dropped_records > 0 {
            log::info!(
                "arbor: dropped {} record(s) of a torn last journal batch (never acknowledged)",
                scanned.dropped_records
            );
        }
        let mut alloc = opened.alloc;
        alloc.reserve_prefix(region.end_block());
        let device_blocks = store.dev.len_bytes() / u64::from(block_bytes);
        let gen = opened.max_generation_seen + 1;
        if device_blocks > alloc.block_count() {
            alloc.grow(device_blocks);
        } else {
            // Checked by `recover`: every block past the device's end is free.
            alloc.shrink(device_blocks, gen);
        }
        let mut w = Writer::new(gen, alloc, sb.catalog_root());
        w.trees.map = opened.trees;
        w.trees.next_id = sb.next_tree_id().max(TREE_ID_FIRST_USER);
        w.reserve_blocks = reserve_blocks(block_bytes, w.alloc.block_count());
        w.seq = sb.checkpoint_seq();
        let alternation = superblock::alternation(opened.slot);
        let state = DurableState::at(sb.generation(), alternation, sb.crc());
        let start = JournalStart {
            next_lsn: scanned.next_lsn,
            prev_crc: scanned.prev_crc,
            checkpoint_seq: sb.checkpoint_seq(),
            replay_lsn: sb.replay_lsn(),
        };
        let journal = Journal::new(region, sb.uuid(), record_max(&opts, &region), start)
            .with_batches_in_flight(opts.journal_batches_in_flight.max(1));
        let db = Db::from_parts(store, w, state, opts, journal, opened.rejected_copies);
        let shared = &db.shared;
        shared.journal.replay_progress(sb.replay_lsn(), sb.checkpoint_seq());
        let records = &scanned.records;
        let replayed =
            replay::replay(shared, &region, records, sb.checkpoint_seq(), scanned.next_lsn);
        let done = match replayed {
            Ok(done) => done,
            Err(e) => {
                // Half replayed: the handle must not checkpoint (its close would record the
                // half as the whole and skip the rest of the journal).
                shared.pipeline.state().fail(Failure::Io(e.with_sources()));
                return Err(e);
            }
        };
        shared.journal.end_replay();
        shared.records_replayed.store(done.applied, crate::sync::Ordering::Relaxed);
        // A checkpoint of what open found, always: the replayed commits are durable only
        // through the journal's old records (the checkpoint moves the replay start past
        // them and past any gap), and the other superblock alternation must not stay an
        // older checkpoint that commits from here on do not build on (if the newest copies
        // were later damaged, open would fall back to it and replay these commits over a
        // state they never saw).
        // (A tool's read-only view writes nothing unless replay needs it.)
        let needed = done.applied + done.skipped > 0 || scanned.skipped_leftovers;
        if needed || !shared.store.dev.is_read_only() {
            shared.checkpoint_open_generation()?;
        }
        db.start_background();
        Ok(db.warmed())
    }

    /// `Options::warm_on_open`. A block that fails to read or verify is logged and left for
    /// the lookup that reaches it to report: the store opened, and the rest stays usable.
    fn warmed(self) -> Db {
        if !self.shared.opts.warm_on_open {
            return self;
        }
        let blocks = self.shared.opts.cache_bytes / u64::from(self.shared.store.block_bytes) / 8;
        let warmed = self.snapshot().and_then(|s| s.warm_internal_nodes(blocks as usize));
        match warmed {
            Ok(n) => log::debug!("arbor: {n} internal node(s) read into the pool at open"),
            Err(e) => log::warn!("arbor: warming the pool at open stopped: {e}"),
        }
        self
    }

    fn from_parts(
        store: Store,
        mut writer: Writer,
        state: DurableState,
        opts: Options,
        journal: Journal,
        rejected: u32,
    ) -> Db {
        writer.hist.open_generation(writer.gen(), writer.seq);
        let limits = RecordLimits::new(store.block_bytes, journal.record_max);
        writer.record = TxnRecord::new(limits);
        writer.fill_siblings = opts.fill_siblings;
        let figures = writer.figures(true, 0);
        let root = RootRecord { seq: writer.seq, gen: writer.gen(), catalog: writer.trees.catalog };
        let uuid = *journal.uuid();
        let shared = Arc::new(Shared {
            store,
            registry: Registry::new(root),
            figures: Mutex::new(figures),
            writer: Mutex::new(writer),
            pipeline: Pipeline { state: Mutex::new(state), changed: Condvar::new() },
            journal,
            checkpointer: Checkpointer::idle(),
            opts,
            uuid,
            rejected_superblock_copies: rejected,
            records_replayed: AtomicU64::new(0),
            txn_ids: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        Db { shared: Arc::new(Handle { shared }) }
    }

    /// Starts the background checkpoint thread, if `Options::checkpoint_interval` asks for one.
    fn start_background(&self) {
        if let Some(interval) = self.shared.opts.checkpoint_interval {
            Checkpointer::start(&self.shared, interval);
        }
    }

    /// Starts the write transaction; blocks while another one is open.
    ///
    /// ```
    /// # let db = arbor::Db::memory(16 << 20)?;
    /// let mut tx = db.begin_write()?;
    /// tx.tree("users")?.insert(b"alice", b"admin")?;
    /// tx.commit()?;
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn begin_write(&self) -> Result<WriteTxn<'_>> {
        WriteTxn::begin(&self.shared)
    }

    /// Starts the write transaction if no other is open, else returns `Ok(None)` at once.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
    /// let tx = db.begin_write()?;
    /// assert!(db.try_begin_write()?.is_none());
    /// drop(tx);
    /// assert!(db.try_begin_write()?.is_some());
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn try_begin_write(&self) -> Result<Option<WriteTxn<'_>>> {
        WriteTxn::try_begin(&self.shared)
    }

    /// Opens the store at `path`, or creates one there if `path` does not exist or holds no
    /// Arbor store. `create`'s rule applies: a target that holds other data is refused
    /// (`Error::ExistingData`) unless `opts.overwrite_existing`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("store.arbor");
    /// let db = arbor::Db::open_or_create(&path, arbor::Options::default())?; // creates
    /// drop(db);
    /// let db = arbor::Db::open_or_create(&path, arbor::Options::default())?; // opens
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn open_or_create(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
        let path = path.as_ref();
        match Db::open(path, opts.clone()) {
            Err(Error::NotAnArborStore { .. }) => Db::create(path, opts),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Db::create(path, opts)
            }
            other => other,
        }
    }

    /// Writes a consistent, compact copy of the store as of now into a new store at `path`
    /// (created with `opts`, whose `block_bytes` the copy uses). It reads a snapshot, so
    /// writers keep running meanwhile; the snapshot is bounded like any other: if the bound
    /// expires it, the call fails with `SnapshotExpired` and the copy is incomplete. The
    /// copy is durable when the call returns.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
    /// # let tx = db.begin_write()?;
    /// # tx.tree("t")?.insert(b"k", b"v")?;
    /// # tx.commit()?;
    /// let info = db.backup_to(dir.path().join("backup.arbor"), arbor::Options::default())?;
    /// assert_eq!(info.entries, 1);
    /// let copy = arbor::Db::open(dir.path().join("backup.arbor"), arbor::Options::default())?;
    /// assert_eq!(copy.snapshot()?.tree("t")?.unwrap().get(b"k")?.unwrap(), b"v");
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn backup_to(&self, path: impl AsRef<Path>, opts: Options) -> Result<BackupInfo> {
        Db::backup_snapshot_to(&self.snapshot()?, path, opts)
    }

    /// [`Db::backup_to`] from a snapshot the caller already holds: the copy holds exactly
    /// what `snap` sees.
    pub fn backup_snapshot_to(
        snap: &Snapshot,
        path: impl AsRef<Path>,
        opts: Options,
    ) -> Result<BackupInfo> {
        let dst = Db::create(path, opts)?;
        let info = backup::copy(snap, &dst.shared)?;
        dst.flush()?;
        Ok(info)
    }

    /// A consistent read-only view of the last commit; cheap (a registration under one
    /// short lock). Usable from any thread while writers continue; dropping every clone
    /// releases the history it held back.
    ///
    /// ```
    /// # let db = arbor::Db::memory(16 << 20)?;
    /// let before = db.snapshot()?;
    /// let mut tx = db.begin_write()?;
    /// tx.tree("t")?.insert(b"k", b"v")?;
    /// tx.commit()?;
    /// assert!(before.tree("t")?.is_none()); // as of its commit
    /// assert!(db.snapshot()?.tree("t")?.is_some());
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot::new(&self.shared))
    }

    /// Test-only: disables the pinned set, to show that tests of the seed scenario fail
    /// without it. Never use outside tests: snapshots then read reused blocks.
    #[doc(hidden)]
    #[cfg(any(test, loom, feature = "fault-injection"))]
    pub fn testing_disable_pinning(&self) {
        self.shared.registry.lock().broken_no_pinning = true;
    }

    /// Makes every committed transaction durable (one flush, if anything is pending).
    pub fn flush(&self) -> Result<()> {
        flush(&self.shared)
    }

    /// Counters and sizes. Never waits for an open write transaction: while one holds the
    /// writer (on any thread, this one included), the writer's figures are those of the
    /// last commit or abort.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        let w = match s.writer.try_lock() {
            Ok(w) => {
                let f = w.figures(true, 0);
                *lock(&s.figures) = f;
                f
            }
            Err(_) => *lock(&s.figures),
        };
        let d = s.pipeline.state();
        let j = s.journal.figures();
        let (live, oldest, expirations, visible_seq) = {
            let r = s.registry.lock();
            let (live, oldest) = r.live();
            (live, oldest, r.expirations, r.root().seq)
        };
        use crate::sync::Ordering::Relaxed;
        Stats {
            block_bytes: s.store.block_bytes,
            generation_open: w.generation_open,
            generation_durable: d.durable_gen,
            blocks_total: w.blocks_total,
            blocks_free: w.blocks_free,
            blocks_reserved: s.store.first_data(),
            largest_free_run: w.largest_free_run,
            trees: w.trees,
            cache_bytes: s.store.pool.bytes(),
            cache_blocks: s.store.pool.len(),
            dirty_bytes: w.dirty_bytes,
            block_reads: s.store.counters.block_reads.load(Relaxed),
            cache_hits: s.store.pool.hits(),
            blocks_written: s.store.counters.blocks_written.load(Relaxed),
            blocks_written_early: s.store.counters.blocks_written_early.load(Relaxed),
            flushes: s.store.counters.flushes.load(Relaxed),
            modlog_bytes: w.modlog_bytes,
            retained_bytes: w.retained_bytes,
            pinned_blocks: w.pinned_blocks,
            snapshots_live: live,
            snapshot_oldest_seq: oldest,
            snapshot_expirations: expirations,
            visible_seq,
            orphan_subtrees: w.orphans,
            rejected_superblock_copies: s.rejected_superblock_copies,
            checkpoints: s.store.counters.checkpoints.load(Relaxed),
            journal_bytes_in_use: j.bytes_in_use,
            journal_batches: j.batches,
            journal_blocks_written: j.blocks_written,
            journal_records: j.records,
            records_replayed: s.records_replayed.load(Relaxed),
            device: s.store.dev.describe(),
        }
    }
}
