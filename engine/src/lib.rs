//! Arbor: a persistent embedded key-value store on raw disk.
//!
//! A copy-on-write B-tree with named trees and durable transactions, writing through
//! O_DIRECT io_uring. See `docs/format.md` for the on-disk layout and the README for usage.

#![deny(clippy::undocumented_unsafe_blocks)]

mod addr_map;
mod alloc;
mod bound;
mod btree;
mod btree_write;
#[doc(hidden)]
pub mod cache;
mod catalog;
pub mod check;
#[doc(hidden)]
pub mod commit;
mod db;
pub mod error;
#[cfg(any(test, feature = "fault-injection"))]
#[doc(hidden)]
pub mod fault;
#[cfg(not(any(test, feature = "fault-injection")))]
mod fault;
mod freeze;
mod history;
pub mod io;
#[doc(hidden)]
pub mod modlog;
#[doc(hidden)]
pub mod mvcc;
mod options;
mod recovery;
mod snapshot;
mod store;
pub mod sync;
mod txn;
mod writeback;
mod writer;

pub use btree::Range;
pub use check::CheckReport;
pub use db::{Db, Stats};
pub use error::{Error, Result};
pub use io::{AlignedBuf, BlockDevice, ReadOp, WriteOp};
pub use options::{Durability, IoBackend, Options, SnapshotPolicy};
pub use snapshot::{Snapshot, Tree};
pub use txn::{CommitInfo, WriteTree, WriteTxn};

/// The README's usage example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme_doctest {}
