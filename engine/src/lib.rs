//! Arbor: a persistent embedded key-value store on raw disk.
//!
//! A copy-on-write B-tree with named trees and durable transactions, writing through
//! O_DIRECT io_uring. See `docs/format.md` for the on-disk layout and the README for usage.
//!
//! # Layout: folders are layers
//!
//! Each folder imports only from the folders listed before it (and from the foundation
//! files at the crate root: `sync.rs`, the one lock/atomic facade; `error.rs`;
//! `options.rs`; `addr_map.rs`, the address-keyed hash map):
//!
//! * `io/`: block devices (io_uring, pread/pwrite, simulated), aligned buffers, argument
//!   checks;
//! * `mvcc/`: the concurrency core readers share: per-block images and their undo log
//!   (`slot`, `modlog`), the readers' table, the seq registry and root publication;
//! * `store/`: the block read path (device, in-flight images, clean cache, verification
//!   against the pointer) and node views (`NodeBuf`, `decode`);
//! * `alloc/`: the allocator (bitmap, pending and held runs, orphan list, persistence);
//! * `writer/`: the single writer's state below the tree, in parts: dirty set, edits
//!   (`Edit`), retention of what snapshots need, the snapshot bound, transaction scratch,
//!   early write-back;
//! * `tree/`: B-trees: lookups and ranges over any `NodeSource`, copy-on-write insert and
//!   remove, the catalog, the one walker and the walk roots;
//! * `durable/`: the group-commit pipeline, freeze (seal, superblock), recovery, the
//!   superblock-area reader;
//! * `txn/`: transactions: the write API (`WriteTxn`), publish and abort, `Snapshot`, the
//!   state the handles share;
//! * `db.rs`: `Db` (create, open, flush, stats);
//! * `check/`: online and offline checks, repair, statistics.
//!
//! Internal invariants are assertions; `Error::Corrupt` is reserved for bytes that came
//! from the device.

#![deny(clippy::undocumented_unsafe_blocks)]

mod addr_map;
mod alloc;
pub mod check;
pub mod codec;
mod db;
mod durable;
pub mod error;
#[cfg(any(test, feature = "fault-injection"))]
#[doc(hidden)]
pub mod fault;
#[cfg(not(any(test, feature = "fault-injection")))]
mod fault;
pub mod io;
#[doc(hidden)]
pub mod mvcc;
mod options;
mod store;
pub mod sync;
mod tree;
mod txn;
mod writer;

// The concurrency core `loom-tests/` drives, at the paths it has always used.
#[doc(hidden)]
pub use durable::pipeline as commit;
#[doc(hidden)]
pub use mvcc::modlog;
#[doc(hidden)]
pub use store::cache;

pub use check::CheckReport;
pub use codec::{Key, KeyRange, TreeDef, TypedBounds, Value};
pub use db::{Db, Stats};
pub use error::{Error, Result};
pub use io::{AlignedBuf, BlockDevice, ReadOp, WriteOp};
pub use options::{Durability, IoBackend, Options, SnapshotPolicy};
pub use txn::backup::BackupInfo;
pub use txn::snapshot::{Range, Snapshot, Tree};
pub use txn::typed::{TypedEntry, TypedIter, TypedTree, TypedWriteTree};
pub use txn::write::{CommitInfo, Savepoint, WriteTxn};
pub use txn::write_ops::{ExtractIf, WriteRange};
pub use txn::write_tree::{Entry, WriteTree};

/// What must not compile (`compile_fail` doctests).
#[cfg(doctest)]
mod compile_fail;

/// The README's usage example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme_doctest {}
