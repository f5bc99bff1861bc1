//! `Options`, `Durability`: how a store is opened and how commits become durable.

use std::time::Duration;

pub use crate::io::IoBackend;

/// When a commit's changes reach the device (design.md §10.15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `commit()` returns after the journal flush that covers its record (design.md §11.3).
    /// Commits that arrive while a journal batch is being written share the next batch's
    /// one write and one flush (group commit).
    #[default]
    Immediate,
    /// `commit()` journals its record and returns; the record is flushed by the next batch,
    /// or once `Options::eventual_interval` has passed since the last one.
    Eventual,
    /// `commit()` only publishes (its record rides the next journal batch); the changes
    /// become durable with a later Immediate commit, `Db::flush`, a checkpoint, or a clean
    /// close.
    None,
}

/// What the writer does when snapshots pin more history than the bound allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SnapshotPolicy {
    /// Expire the oldest snapshots: their next read returns `Error::SnapshotExpired`.
    #[default]
    ExpireOldest,
    /// The writer waits for readers to drop their snapshots, then errors after `timeout`.
    WriterWaits {
        /// How long `begin_write` waits before it fails with `Error::SnapshotBoundReached`.
        timeout: Duration,
    },
}

/// Configuration for `Db::create` / `Db::open`. `Options::default()` suits most uses.
#[derive(Clone, Debug)]
pub struct Options {
    /// Block size for `create` (a power of two in 4 KiB..=64 KiB). `open` reads it from disk.
    pub block_bytes: u32,
    /// Budget of the buffer pool: bytes of clean blocks resident in memory (design.md §12).
    pub cache_bytes: u64,
    /// Bound on mod-log entries plus retained buffers for snapshots (design.md §5): memory,
    /// so the default equals the default `cache_bytes` (256 MiB); scale the two together.
    ///
    /// Measured (`examples/export_bound.rs`, release build, 1M keys of 24 + 150 bytes, one
    /// snapshot exporting the tree while a writer commits 1,000 random overwrites at a
    /// time): `Immediate` commits log nothing (0 MiB); with `Durability::None` commits (the
    /// generation stays open, so edits are logged) a 1.2 s export peaked at 5.9 MiB, and an
    /// export slowed to 5.7 s, while the writer overwrote 892,000 keys, at 159.7 MiB: over
    /// the old 64 MiB default, under this one.
    pub modlog_max_bytes: u64,
    /// Bound on blocks pinned by outstanding snapshots (disk: freed blocks kept from reuse).
    /// A snapshot pins at most the blocks its own trees reach, so a bound above a tree's
    /// size means an export of that tree never expires on this bound. Default 1,048,576
    /// blocks (4 GiB at 4 KiB blocks; a 1M-key tree of 150-byte values is about 73,000).
    ///
    /// Measured (as above): a 1.2 s export pinned 39,702 blocks; slowed to 5.7 s under
    /// `None` commits it pinned 72,244 — past the old default of 65,536 (it expired), well
    /// under this one.
    pub pinned_max_blocks: u64,
    /// What happens when a bound is reached.
    pub snapshot_policy: SnapshotPolicy,
    /// Cap on the open write transaction's own undo entries (design.md §10.8).
    pub txn_undo_max_bytes: u64,
    /// io_uring queue depth.
    pub queue_depth: u32,
    /// Which I/O backend to use (`Auto` falls back to pread/pwrite when io_uring is unavailable).
    pub io_backend: IoBackend,
    /// Files: size at create. The default, 0, makes a new store as small as it can be
    /// (512 KiB at 4 KiB blocks); it grows as it fills (`file_grow_step_bytes`).
    pub file_initial_bytes: u64,
    /// Files: the largest growth step. Each step is as large as the file already is, up to
    /// this, and is written with zeros once (design.md §10.16).
    pub file_grow_step_bytes: u64,
    /// Files: the largest size they grow to; past it, commits get `Error::NoSpace`.
    pub file_max_bytes: u64,
    /// Fill before split (design.md §4.1): a full leaf first moves items into a sibling
    /// its transaction allocated, so a large random load leaves leaves ~79 % full instead
    /// of ~69 % (kv-bench, 1M keys: file after load 270.5 MB instead of 337.6 MB). Off by
    /// default: fuller leaves split sooner under later small inserts, which cost eight
    /// concurrent committers 20–35 % in the same benchmark. For stores loaded in bulk and
    /// then mostly read.
    pub fill_siblings: bool,
    /// Durability of transactions that do not call `set_durability`.
    pub durability: Durability,
    /// `Durability::Eventual`: the longest a commit waits to become durable.
    pub eventual_interval: Duration,
    /// Dirty bytes in memory past which the open generation is written out at the next
    /// commit boundary (Eventual/None commits) and, inside a transaction, private leaves are
    /// written back early to their fresh addresses (design.md §4) so a transaction larger than
    /// RAM works.
    pub dirty_max_bytes: u64,
    /// `create` overwrites a target that holds data. Without it, `create` refuses any
    /// target with a non-zero byte in its first or last MiB ([`crate::Error::ExistingData`],
    /// naming the store or filesystem found, or where the first such byte is) and changes
    /// nothing; new, empty and all-zero targets are accepted.
    pub overwrite_existing: bool,
    /// `create`: bytes of the commit journal (design.md §11.1), reserved right after the
    /// superblock area; at most 1/8 of the device (for a file: of `file_initial_bytes` when
    /// set, else of `file_max_bytes`), at least 8 slots. Fixed for the store's life.
    /// Default 16 MiB: every store pays for the region (at 64 MiB a 1M-key file after load
    /// was 403 MB, at 16 MiB 337.6 MB), while a smaller ring half fills sooner and so
    /// checkpoints more often under sustained durable commits (10,000 1-insert commits: 3.87
    /// blocks written per commit against 3.50 at 64 MiB, p99 about twice as high). Set it
    /// larger for such a load when space is plentiful.
    pub journal_bytes: u64,
    /// Largest journal record (one transaction's logical ops): a larger transaction commits
    /// through a checkpoint instead (design.md §11.5). 0, the default, means 1/8 of the
    /// journal.
    pub journal_record_max: u64,
    /// How often a background thread checkpoints while journal records are pending
    /// (design.md §11.6); it also flushes `Eventual` records. `None`: no background thread —
    /// checkpoints then run in the committing thread when the journal is half full or dirty
    /// bytes pass `dirty_max_bytes`, and on `Db::flush` and close. Default 1 s.
    pub checkpoint_interval: Option<Duration>,
    /// Journal batches written and flushed at once, each by its own leader (design.md
    /// §11.4): more than 1 lets commits that arrive while a batch flushes start theirs
    /// at once, for devices that run flushes in parallel. 0 is taken as 1. Default
    /// [`crate::journal::BATCHES_IN_FLIGHT`].
    pub journal_batches_in_flight: usize,
    /// `open`: read the internal nodes of every tree into the buffer pool before returning
    /// (design.md §12.8), upper levels first, at most an eighth of `cache_bytes` of them,
    /// all in flight at once — so that the first lookups after a restart each read one
    /// block (their leaf) rather than one per level. A 1M-key store (24-byte keys, 150-byte
    /// values: ~1,500 internal nodes of 4 KiB, 6 MB) opened in 37–41 ms without it and
    /// 53–71 ms with it on this project's test VM. Default true.
    pub warm_on_open: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            block_bytes: arbor_format::constants::BLOCK_BYTES_DEFAULT,
            cache_bytes: 256 << 20,
            modlog_max_bytes: 256 << 20,
            pinned_max_blocks: 1 << 20,
            snapshot_policy: SnapshotPolicy::default(),
            txn_undo_max_bytes: 256 << 20,
            queue_depth: 64,
            io_backend: IoBackend::Auto,
            file_initial_bytes: 0,
            file_grow_step_bytes: 64 << 20,
            file_max_bytes: 1 << 40,
            fill_siblings: false,
            durability: Durability::Immediate,
            eventual_interval: Duration::from_millis(100),
            dirty_max_bytes: 1 << 30,
            overwrite_existing: false,
            journal_bytes: arbor_format::constants::JOURNAL_BYTES_DEFAULT,
            journal_record_max: 0,
            checkpoint_interval: Some(Duration::from_secs(1)),
            journal_batches_in_flight: crate::durable::journal::BATCHES_IN_FLIGHT,
            warm_on_open: true,
        }
    }
}
