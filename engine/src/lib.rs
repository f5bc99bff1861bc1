//! Arbor: a persistent embedded key-value store on raw disk.
//!
//! A copy-on-write B-tree with named trees and durable transactions, writing through
//! O_DIRECT io_uring. See `docs/format.md` for the on-disk layout and the README for usage.

#![deny(clippy::undocumented_unsafe_blocks)]

mod addr_map;
mod alloc;
pub mod check;
mod db;
mod durable;
pub mod error;
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
pub use db::{Db, Stats};
pub use error::{Error, Result};
pub use io::{AlignedBuf, BlockDevice, ReadOp, WriteOp};
pub use options::{Durability, IoBackend, Options, SnapshotPolicy};
pub use tree::read::Range;
pub use txn::snapshot::{Snapshot, Tree};
pub use txn::write::{CommitInfo, WriteTree, WriteTxn};

/// The README's usage example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme_doctest {}
